#include "providers/libvirt/libvirt_connection.h"

#include <condition_variable>

#include "providers/libvirt/libvirt_errors.h"

namespace evac::libvirt {
namespace {

// 0 means dead; -1 only comes from a driver that cannot tell, and treating
// that as dead would re-open the connection on every call.
bool is_alive(virConnectPtr conn) { return virConnectIsAlive(conn) != 0; }

// libvirt's test driver ("test:///...", no "+transport") runs inside this
// process: there is no daemon whose silence an open could wait on.
bool opens_in_process(const std::string& uri) { return uri.rfind("test:", 0) == 0; }

}  // namespace

// One virConnectOpen, shared by every caller that waits on it. It may
// outlive them all (and the Connection: the opener holds a reference).
struct Connection::PendingOpen {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  ConnectHandle conn;  // taken by the first caller to see it done
  Status error = Status::ok();
  const std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  // Opens `uri` on the calling thread and says so to every waiter.
  void open(const std::string& uri, const ConnectionLimits& limits);
};

void Connection::PendingOpen::open(const std::string& uri, const ConnectionLimits& limits) {
  ConnectHandle opened(virConnectOpen(uri.c_str()));
  Status failed = Status::ok();
  if (opened == nullptr) {
    Status cause = last_error("cannot connect to libvirt at " + uri);
    // Whatever libvirt's reason, from evac's side the hypervisor is not
    // reachable now; the operator fixes the daemon or the URI and retries.
    failed = unavailable(cause.message(), "check that libvirtd runs and the URI is right: " + uri);
  } else {
    // A driver inside this process (test:///) has no daemon to keep alive
    // and refuses; one behind libvirtd starts answering pings both ways.
    virConnectSetKeepAlive(opened.get(), limits.keepalive_interval_s, limits.keepalive_count);
  }
  std::lock_guard lock(mu);
  conn = std::move(opened);
  error = std::move(failed);
  done = true;
  cv.notify_all();
}

// The thread that opens: one request at a time (Connection keeps a single
// open pending). It may outlive the Connection while an open hangs.
struct Connection::Opener {
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<PendingOpen> next;
  bool busy = false;
  bool stop = false;
  std::thread thread;

  static void serve(const std::shared_ptr<Opener>& self, const std::string& uri, const ConnectionLimits& limits);
};

Connection::Connection(std::string uri, ConnectionLimits limits) : uri_(std::move(uri)), limits_(limits) {
  initialise_libvirt();
}

Connection::~Connection() {
  cached_.reset();
  if (opener_ == nullptr) return;
  std::unique_lock lock(opener_->mu);
  opener_->stop = true;
  opener_->cv.notify_all();
  // An open that hangs on a silent daemon ends when libvirt gives up, if
  // ever; the thread holds its own reference and leaves then.
  const bool hung = opener_->busy;
  lock.unlock();
  if (hung)
    opener_->thread.detach();
  else
    opener_->thread.join();
}

Result<ConnectHandle> Connection::acquire() {
  const auto give_up = std::chrono::steady_clock::now() + limits_.open_timeout;
  for (;;) {
    std::shared_ptr<PendingOpen> pending;
    {
      std::lock_guard lock(mu_);
      if (cached_ != nullptr && is_alive(cached_.get())) {
        if (virConnectRef(cached_.get()) < 0) return last_error("taking a reference to the libvirt connection at " + uri_);
        return ConnectHandle(cached_.get());
      }
      cached_.reset();
      if (pending_ == nullptr) pending_ = start_open();
      pending = pending_;
    }
    std::unique_lock wait(pending->mu);
    if (!pending->cv.wait_until(wait, give_up, [&] { return pending->done; })) {
      const auto silent = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - pending->started);
      return unavailable("libvirt at " + uri_ + " has not answered a connection for " + std::to_string(silent.count()) + " s",
                         "libvirtd there is hung, overloaded or cut off: check it (`virsh -c " + uri_ +
                             " list`, its log); evac keeps that connection attempt and uses it once libvirtd answers");
    }
    Status error = pending->error;
    ConnectHandle opened = std::move(pending->conn);
    wait.unlock();
    std::lock_guard lock(mu_);
    if (pending_ == pending) pending_.reset();
    if (!error.is_ok()) return error;
    if (opened != nullptr) cached_ = std::move(opened);
    // Round again: hand out the connection just cached (or the one another
    // waiter on the same open cached first).
  }
}

std::shared_ptr<Connection::PendingOpen> Connection::start_open() {
  auto pending = std::make_shared<PendingOpen>();
  if (opens_in_process(uri_)) {
    pending->open(uri_, limits_);
    return pending;
  }
  if (opener_ == nullptr) {
    opener_ = std::make_shared<Opener>();
    opener_->thread = thread_without_signals([self = opener_, uri = uri_, limits = limits_] { Opener::serve(self, uri, limits); });
  }
  std::lock_guard lock(opener_->mu);
  opener_->next = pending;
  opener_->cv.notify_all();
  return pending;
}

void Connection::Opener::serve(const std::shared_ptr<Opener>& self, const std::string& uri, const ConnectionLimits& limits) {
  for (;;) {
    std::shared_ptr<PendingOpen> pending;
    {
      std::unique_lock lock(self->mu);
      self->cv.wait(lock, [&] { return self->stop || self->next != nullptr; });
      if (self->stop) return;
      pending = std::move(self->next);
      self->next.reset();
      self->busy = true;
    }
    pending->open(uri, limits);
    std::lock_guard lock(self->mu);
    self->busy = false;
  }
}

bool Connection::forget_if_dead(virConnectPtr used) {
  if (is_alive(used)) return false;
  std::lock_guard lock(mu_);
  if (cached_.get() == used) cached_.reset();
  return true;
}

}  // namespace evac::libvirt

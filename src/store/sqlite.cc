#include "store/sqlite.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace evac::sqlite {

namespace {

// SQLite creates a database file with 0644 less the umask; the state it
// holds is private. The file is made here first, 0600 whatever the umask;
// SQLite then gives the WAL and the other companions the main file's mode.
Status make_private(const std::string& path) {
  const std::string hint = "the state database must belong to evacd's user; check its folder and owner";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    const bool ok = ::fchmod(fd, 0600) == 0;
    const int e = errno;
    ::close(fd);
    if (!ok) return failed_precondition("cannot set the mode of state database " + path + ": " + std::strerror(e), hint);
    return Status::ok();
  }
  if (errno != EEXIST) return Status::ok();  // SQLite's own open names the problem
  // Left by an older evacd, or by a kill -9 (a WAL with data): closed to
  // group and others, the owner's bits kept.
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    const std::string file = path + suffix;
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0) continue;
    if (::chmod(file.c_str(), st.st_mode & 0700) != 0)
      return failed_precondition("cannot make " + file + " private: " + std::strerror(errno), hint);
  }
  return Status::ok();
}

}  // namespace

Status status_from_sqlite(sqlite3* db, int rc, std::string_view doing) {
  std::string msg = std::string(doing) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return already_exists(msg, "choose another name or delete the existing one first");
      return failed_precondition(msg, "the change conflicts with existing state");
    case SQLITE_FULL:
      return unavailable(msg, "the state directory's disk is full: free space, then retry");
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return unavailable(msg, "another process holds the state database: is a second evacd running on this state_dir?");
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      return failed_precondition(msg, "check that the state directory exists and is writable by evacd");
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return internal_error(msg, "the state database is damaged: restore it from backup");
    default:
      return internal_error(msg);
  }
}

Statement& Statement::bind(int pos, std::string_view v) {
  int rc = sqlite3_bind_text(stmt_, pos, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK && bind_status_.is_ok()) bind_status_ = status_from_sqlite(db_, rc, "binding a parameter");
  return *this;
}
Statement& Statement::bind(int pos, std::int64_t v) {
  int rc = sqlite3_bind_int64(stmt_, pos, v);
  if (rc != SQLITE_OK && bind_status_.is_ok()) bind_status_ = status_from_sqlite(db_, rc, "binding a parameter");
  return *this;
}
Statement& Statement::bind(int pos, const std::optional<std::string>& v) { return v ? bind(pos, *v) : bind_null(pos); }
Statement& Statement::bind(int pos, const std::optional<std::int64_t>& v) { return v ? bind(pos, *v) : bind_null(pos); }
Statement& Statement::bind_null(int pos) {
  sqlite3_bind_null(stmt_, pos);
  return *this;
}

Result<bool> Statement::step() {
  if (!bind_status_.is_ok()) return bind_status_;
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  int extended = sqlite3_extended_errcode(db_);
  return status_from_sqlite(db_, extended, "state database");
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_status_ = Status::ok();
}

Status Statement::run() {
  for (;;) {
    auto r = step();
    if (!r) return r.status();
    if (!*r) return Status::ok();
  }
}

std::string Statement::text(int col) const {
  auto p = sqlite3_column_text(stmt_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col)) : std::string();
}
std::optional<std::string> Statement::optional_text(int col) const {
  if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
  return text(col);
}
std::int64_t Statement::int64(int col) const { return sqlite3_column_int64(stmt_, col); }
std::optional<std::int64_t> Statement::optional_int64(int col) const {
  if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
  return int64(col);
}

Result<Connection> Connection::open(const std::string& path) {
  EVAC_RETURN_IF_ERROR(make_private(path));
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status s = status_from_sqlite(db, rc, "opening state database " + path);
    sqlite3_close_v2(db);
    return s;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 5000);
  return Connection(db);
}

Result<Statement> Connection::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return status_from_sqlite(db_, rc, "preparing a query");
  return Statement(db_, stmt);
}

Status Connection::exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) return status_from_sqlite(db_, sqlite3_extended_errcode(db_), "state database");
  return Status::ok();
}

}  // namespace evac::sqlite

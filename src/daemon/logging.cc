#include "daemon/logging.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

namespace evac {
namespace {

// spdlog's patterns cannot escape a message for JSON, so JSON lines get a
// sink of their own that serialises each record properly.
class JsonLinesSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit JsonLinesSink(std::string site) : site_(std::move(site)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    auto ts = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    nlohmann::json line = {{"ts", static_cast<double>(ts) / 1000.0},
                           {"level", std::string(spdlog::level::to_string_view(msg.level).data(),
                                                 spdlog::level::to_string_view(msg.level).size())},
                           {"site", site_},
                           {"msg", std::string(msg.payload.data(), msg.payload.size())}};
    std::string out = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::fwrite(out.data(), 1, out.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }

 private:
  std::string site_;
};

}  // namespace

void setup_logging(const std::string& format, const std::string& level, const std::string& site) {
  std::shared_ptr<spdlog::logger> logger;
  if (format == "json") {
    logger = std::make_shared<spdlog::logger>("evacd", std::make_shared<JsonLinesSink>(site));
  } else {
    logger = spdlog::stderr_color_mt("evacd");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [" + site + "] %v");
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

}  // namespace evac

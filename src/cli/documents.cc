#include "cli/documents.h"

#include <sys/stat.h>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <istream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

namespace evac::cli {
using nlohmann::json;

std::string format_limit_bytes(std::size_t bytes) {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0) return std::to_string(bytes / (1024 * 1024)) + " MiB";
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes / 1024) + " KiB";
  return std::to_string(bytes) + " bytes";
}

namespace {

Status too_big(const std::string& source, const DocumentBudget& budget) {
  const bool several = budget.bytes_read > 0;
  return invalid_argument(source + " is larger than " + (several ? "what is left of " : "") +
                              format_limit_bytes(budget.limits.max_file_bytes) + ", the most evac reads from files " +
                              (several ? "in one command" : "at once") + "; nothing was read from it",
                          "a recovery plan is a few KiB: check that the path names the file you meant, or apply "
                          "fewer documents at once");
}

bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    if (len == 2 && c < 0xC2) return false;  // overlong
    if (len == 3) {
      const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)) return false;  // overlong, surrogates
    }
    if (len == 4) {
      const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      if ((c == 0xF0 && c1 < 0x90) || c > 0xF4 || (c == 0xF4 && c1 >= 0x90)) return false;
    }
    i += len;
  }
  return true;
}

// Thrown from the event handler to stop the parser at the first refusal.
struct Refused {
  Status status;
};

// Builds JSON values from yaml-cpp's parser events, one document at a time,
// charging every value to the budget before it is made.
class JsonBuilder final : public YAML::EventHandler {
 public:
  JsonBuilder(DocumentBudget& budget, std::string source)
      : budget_(budget), source_(std::move(source)), nodes_before_(budget.nodes) {}

  std::vector<json> documents;  // empty documents left out

  void OnDocumentStart(const YAML::Mark& mark) override {
    mark_ = mark;
    root_.reset();
    stack_.clear();
    anchors_.clear();
    open_anchors_.clear();
  }
  void OnDocumentEnd() override {
    if (root_ && !root_->is_null()) documents.push_back(std::move(*root_));
    root_.reset();
  }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    mark_ = mark;
    if (expecting_key()) refuse_key();
    charge(1, 0, 0, false);
    remember(anchor, json(nullptr), std::nullopt, 1, 0, 0);
    place(json(nullptr), 0);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, const std::string& value) override {
    mark_ = mark;
    if (!valid_utf8(value)) refuse("text that is not valid UTF-8", "save the file as UTF-8");
    charge(1, value.size(), 0, false);
    if (expecting_key()) {
      take_key(value);
      remember(anchor, json(value), value, 1, value.size(), 0);
      return;
    }
    // A quoted scalar is a string whatever it looks like.
    json v = tag == "!" ? json(value) : plain_scalar(value);
    remember(anchor, v, value, 1, value.size(), 0);
    place(std::move(v), 0);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    mark_ = mark;
    ++aliases_;
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      if (open_anchors_.count(anchor))
        refuse("an alias (*name) inside the value it names: it would never end",
               "an alias may only name a value that ends before it");
      refuse("an alias (*name) to nothing", "define the anchor (&name) before using it");
    }
    const Anchored& a = it->second;
    if (expecting_key()) {
      if (!a.scalar) refuse_key();
      charge(1, a.scalar->size(), 0, false);
      take_key(*a.scalar);
      return;
    }
    charge(a.nodes, a.text_bytes, a.height, true);
    place(json(a.value), a.height);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(mark, anchor, json::array());
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(mark, anchor, json::object());
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    json value;                      // an array or an object
    std::optional<std::string> key;  // an object's key waiting for its value
    YAML::anchor_t anchor = 0;
    std::size_t produced_at_start = 0, text_at_start = 0;
    std::size_t child_height = 0;  // the deepest list or map inside, in levels
  };
  struct Anchored {
    json value;
    std::optional<std::string> scalar;  // its text, when it is a scalar (it may be a key)
    std::size_t nodes = 0, text_bytes = 0, height = 0;
  };

  std::string where() const {
    std::string out = source_;
    // Numbered as `evac apply` numbers them: empty documents do not count.
    if (!documents.empty()) out += " document " + std::to_string(documents.size() + 1);
    std::string path;
    for (const auto& f : stack_) {
      if (f.value.is_array())
        path += "[" + std::to_string(f.value.size()) + "]";
      else if (f.key)
        path += "." + *f.key;
    }
    // Deep nesting is the problem, not a path to print in full.
    if (path.size() > 120) path = path.substr(0, 120) + "...";
    return out + path;
  }
  [[noreturn]] void refuse(const std::string& what, const std::string& hint) {
    throw Refused{invalid_argument(where() + ": " + what + " (line " + std::to_string(mark_.line + 1) + ")",
                                   hint + "; nothing was changed")};
  }
  [[noreturn]] void refuse_key() { refuse("a key that is not a plain word", "keys are names such as vm or priority"); }

  bool expecting_key() const { return !stack_.empty() && stack_.back().value.is_object() && !stack_.back().key; }

  void take_key(const std::string& key) {
    Frame& f = stack_.back();
    if (f.value.contains(key)) refuse("key '" + key + "' appears twice", "give each key once");
    f.key = key;
  }

  // Charges `nodes` values and `text` bytes (an alias's copy, or one value)
  // placed `height` levels deep below the current one; refuses what would
  // pass a limit.
  void charge(std::size_t nodes, std::size_t text, std::size_t height, bool alias) {
    const DocumentLimits& l = budget_.limits;
    const std::string expanded = aliases_ > 0 ? " once its aliases (*name) are expanded" : "";
    if (stack_.size() + height > l.max_depth)
      refuse("lists and maps nested more than " + std::to_string(l.max_depth) + " deep" + (alias ? expanded : ""),
             "a recovery plan is 5 levels deep: look for brackets that are not closed, or for aliases that nest "
             "the value they name");
    if (nodes > l.max_nodes - std::min(l.max_nodes, budget_.nodes))
      refuse("more than " + std::to_string(l.max_nodes) + " values" + expanded +
                 (nodes_before_ > 0 ? " (counting the files read before it)" : ""),
             "a recovery plan has a few hundred: write out once what aliases repeat, or apply fewer documents "
             "at once");
    if (text > l.max_text_bytes - std::min(l.max_text_bytes, budget_.text_bytes))
      refuse("more than " + format_limit_bytes(l.max_text_bytes) + " of text" + expanded,
             "write out once what aliases repeat, or apply fewer documents at once");
    budget_.nodes += nodes;
    budget_.text_bytes += text;
    produced_ += nodes;
    produced_text_ += text;
  }

  // Keeps a copy of an anchored value for its aliases. The copy is
  // memory too: it is charged (but not as produced output).
  void remember(YAML::anchor_t anchor, const json& value, std::optional<std::string> scalar, std::size_t nodes,
                std::size_t text, std::size_t height) {
    if (anchor == YAML::NullAnchor) return;
    const std::size_t produced = produced_, produced_text = produced_text_;
    charge(nodes, text, 0, true);
    produced_ = produced;
    produced_text_ = produced_text;
    open_anchors_.erase(anchor);
    anchors_[anchor] = Anchored{value, std::move(scalar), nodes, text, height};
  }

  void open(const YAML::Mark& mark, YAML::anchor_t anchor, json empty) {
    mark_ = mark;
    if (expecting_key()) refuse_key();
    charge(1, 0, 1, false);
    Frame f;
    f.value = std::move(empty);
    f.anchor = anchor;
    f.produced_at_start = produced_ - 1;
    f.text_at_start = produced_text_;
    if (anchor != YAML::NullAnchor) open_anchors_.insert(anchor);
    stack_.push_back(std::move(f));
  }

  void close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    const std::size_t height = f.child_height + 1;
    remember(f.anchor, f.value, std::nullopt, produced_ - f.produced_at_start, produced_text_ - f.text_at_start, height);
    place(std::move(f.value), height);
  }

  // Puts a finished value where it belongs: the document's root, a list's
  // next item or the value of an object's waiting key.
  void place(json v, std::size_t height) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return;
    }
    Frame& f = stack_.back();
    f.child_height = std::max(f.child_height, height);
    if (f.value.is_array()) {
      f.value.push_back(std::move(v));
    } else {
      f.value[*f.key] = std::move(v);
      f.key.reset();
    }
  }

  DocumentBudget& budget_;
  std::string source_;
  YAML::Mark mark_;
  std::optional<json> root_;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, Anchored> anchors_;
  std::set<YAML::anchor_t> open_anchors_;
  std::size_t produced_ = 0, produced_text_ = 0;  // what this text's output holds, aliases expanded
  std::size_t nodes_before_ = 0;  // what the texts read before this one used
  std::size_t aliases_ = 0;
};

}  // namespace

json plain_scalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  std::size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  bool digits = i < s.size(), dot = false, exp = false;
  for (std::size_t k = i; k < s.size() && digits; ++k) {
    char c = s[k];
    if (c >= '0' && c <= '9') continue;
    if (c == '.' && !dot && !exp) dot = true;
    else if ((c == 'e' || c == 'E') && !exp && k > i && k + 1 < s.size()) {
      exp = true;
      if (s[k + 1] == '-' || s[k + 1] == '+') ++k;
    } else {
      digits = false;
    }
  }
  if (digits) {
    auto parsed = json::parse(s[0] == '+' ? s.substr(1) : s, nullptr, false);
    if (parsed.is_number()) return parsed;
  }
  return s;
}

Result<std::string> read_limited(std::istream& in, const std::string& source, DocumentBudget& budget) {
  const std::size_t left = budget.limits.max_file_bytes - std::min(budget.limits.max_file_bytes, budget.bytes_read);
  std::string text;
  char buf[64 * 1024];
  while (in) {
    in.read(buf, sizeof buf);
    const std::size_t got = static_cast<std::size_t>(in.gcount());
    if (got == 0) break;
    if (text.size() + got > left) return too_big(source, budget);
    text.append(buf, got);
  }
  if (in.bad()) return invalid_argument("cannot read " + source, "check the path and that you may read it");
  budget.bytes_read += text.size();
  return text;
}

Result<std::string> read_file_limited(const std::string& path, DocumentBudget& budget) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return invalid_argument("cannot read " + path + ": " + std::strerror(errno), "check the path");
  if (S_ISDIR(st.st_mode)) return invalid_argument(path + " is a folder, not a file", "name a file");
  // A regular file says its size: refuse a big one before reading any of it.
  const std::size_t left = budget.limits.max_file_bytes - std::min(budget.limits.max_file_bytes, budget.bytes_read);
  if (S_ISREG(st.st_mode) && static_cast<std::size_t>(st.st_size) > left) return too_big(path, budget);
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid_argument("cannot read " + path, "check that you may read it");
  return read_limited(in, path, budget);
}

Result<std::vector<json>> parse_documents(const std::string& text, const std::string& source, DocumentBudget& budget) {
  if (text.size() > budget.limits.max_file_bytes) return too_big(source, budget);
  std::istringstream in(text);
  JsonBuilder builder(budget, source);
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(builder)) {
    }
  } catch (const Refused& r) {
    return r.status;
  } catch (const YAML::DeepRecursion& e) {
    return invalid_argument(source + ": lists and maps nested more than " + std::to_string(budget.limits.max_depth) +
                                " deep (line " + std::to_string(e.mark.line + 1) + ")",
                            "a recovery plan is 5 levels deep: look for brackets that are not closed; nothing was changed");
  } catch (const YAML::Exception& e) {
    return invalid_argument(source + " is not valid YAML or JSON: line " + std::to_string(e.mark.line + 1) + ", column " +
                                std::to_string(e.mark.column + 1) + ": " + e.msg,
                            "fix the file; nothing was changed");
  }
  return std::move(builder.documents);
}

Result<std::vector<json>> parse_documents(const std::string& text, const std::string& source, const DocumentLimits& limits) {
  DocumentBudget budget{limits};
  return parse_documents(text, source, budget);
}

}  // namespace evac::cli

// A thin RAII layer over SQLite's C API: a connection, prepared statements
// with bound parameters, and errors as Status. Nothing evac-specific here.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace evac::sqlite {

class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  // Binds by 1-based position; chainable.
  Statement& bind(int pos, std::string_view v);
  Statement& bind(int pos, const std::string& v) { return bind(pos, std::string_view(v)); }
  Statement& bind(int pos, const char* v) { return bind(pos, std::string_view(v)); }
  Statement& bind(int pos, std::int64_t v);
  Statement& bind(int pos, int v) { return bind(pos, static_cast<std::int64_t>(v)); }
  Statement& bind(int pos, const std::optional<std::string>& v);
  Statement& bind(int pos, const std::optional<std::int64_t>& v);
  Statement& bind_null(int pos);

  // Ready to bind and run again (a statement reused in a loop).
  void reset();

  // Steps once: a row (true), done (false) or an error.
  Result<bool> step();
  // Steps to completion, for statements that return no rows.
  Status run();

  // Reads every remaining row with `read(const Statement&)`.
  template <typename Read>
  auto all(Read read) -> Result<std::vector<decltype(read(std::declval<const Statement&>()))>> {
    std::vector<decltype(read(*this))> out;
    for (;;) {
      auto row = step();
      if (!row) return row.status();
      if (!*row) return out;
      out.push_back(read(*this));
    }
  }
  // Reads the first row, if there is one.
  template <typename Read>
  auto first(Read read) -> Result<std::optional<decltype(read(std::declval<const Statement&>()))>> {
    using T = decltype(read(*this));
    auto row = step();
    if (!row) return row.status();
    if (!*row) return std::optional<T>();
    return std::optional<T>(read(*this));
  }

  std::string text(int col) const;
  std::optional<std::string> optional_text(int col) const;
  std::int64_t int64(int col) const;
  std::optional<std::int64_t> optional_int64(int col) const;

 private:
  Status bind_status_;
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

class Connection {
 public:
  // Opens (creating) the database file at `path`. The file and SQLite's
  // companions (-wal, -shm, -journal, which SQLite creates with the main
  // file's mode) are the owner's alone (0600) whatever the umask; ones an
  // older process left open to others are closed.
  static Result<Connection> open(const std::string& path);
  Connection(Connection&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { sqlite3_close_v2(db_); }

  Result<Statement> prepare(std::string_view sql);
  Status exec(const std::string& sql);  // one or more statements, no parameters
  std::int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  int changes() const { return sqlite3_changes(db_); }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// Maps an SQLite result code to a Status; UNIQUE violations become
// kAlreadyExists, a full disk says so, the rest are internal errors.
Status status_from_sqlite(sqlite3* db, int rc, std::string_view doing);

}  // namespace evac::sqlite

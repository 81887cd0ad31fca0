// Table: a plain-text table with aligned columns, for kvtierctl's human-readable output.
//
// Columns are declared up front with their alignment (numbers right, text left); cells are
// strings the caller has already formatted. Output is one header line, then one line per row,
// columns separated by two spaces, no trailing spaces. A value type; not thread-safe.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace kvtier::ctl {

class Table {
 public:
  enum class Align { kLeft, kRight };
  struct Column {
    std::string title;
    Align align = Align::kRight;
  };

  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

  // REQUIRES: cells.size() == number of columns (missing cells print empty, extra are dropped).
  void AddRow(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  void Print(std::ostream& out) const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace kvtier::ctl

#include "table.h"

#include <gtest/gtest.h>

#include <sstream>

namespace kvtier::ctl {
namespace {

TEST(Table, AlignsColumnsWithoutTrailingSpaces) {
  Table t({{"NAME", Table::Align::kLeft}, {"COUNT"}});
  t.AddRow({"dram", "7"});
  t.AddRow({"x", "12345"});
  std::ostringstream out;
  t.Print(out);
  EXPECT_EQ(out.str(),
            "NAME  COUNT\n"
            "dram      7\n"
            "x     12345\n");
}

TEST(Table, LastLeftColumnIsNotPadded) {
  Table t({{"A"}, {"LONG TITLE", Table::Align::kLeft}});
  t.AddRow({"1", "v"});
  std::ostringstream out;
  t.Print(out);
  EXPECT_EQ(out.str(), "A  LONG TITLE\n1  v\n");
}

}  // namespace
}  // namespace kvtier::ctl

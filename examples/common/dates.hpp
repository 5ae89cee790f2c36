// The date-normalisation task of examples 11 (attention) and 16 (Transformer), header-only: eight source
// formats of a date ("september 27, 1994", "9/27/94", "27 sep 1994", ...) -> "1994-09-27", distinct dates
// 1950..2049 (two-digit years read as 1950..2049), so held-out dates never occur in training, in any format.
#pragma once

#include <tapegrad/tapegrad.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace example::dates {

inline const char* const kMonths[] = {"january", "february", "march",     "april",   "may",      "june",
                                      "july",    "august",   "september", "october", "november", "december"};
inline const char* const kDays[] = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"};
constexpr int kFormats = 8;

inline int days_in_month(int y, int m) {
  static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : d[m - 1];
}

// 0 = monday (Sakamoto's method gives 0 = sunday).
inline int weekday(int y, int m, int d) {
  static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
  if (m < 3) y -= 1;
  const int sunday0 = (y + y / 4 - y / 100 + y / 400 + t[m - 1] + d) % 7;
  return (sunday0 + 6) % 7;
}

inline std::string two(int v) { return std::string(1, char('0' + v / 10 % 10)) + char('0' + v % 10); }

inline std::string format_date(int y, int m, int d, int fmt) {
  const std::string month = kMonths[m - 1], mon = month.substr(0, 3), year = std::to_string(y);
  switch (fmt) {
    case 0: return month + " " + std::to_string(d) + ", " + year;
    case 1: return mon + " " + std::to_string(d) + ", " + year;
    case 2: return std::to_string(m) + "/" + std::to_string(d) + "/" + two(y % 100);
    case 3: return two(m) + "/" + two(d) + "/" + year;
    case 4: return std::to_string(d) + " " + mon + " " + year;
    case 5: return std::to_string(d) + " " + month + " " + year;
    case 6: return std::string(kDays[weekday(y, m, d)]) + ", " + month + " " + std::to_string(d) + ", " + year;
    default: return two(d) + "." + two(m) + "." + year;
  }
}

// n distinct dates, each in a random format; format_of maps each source to its format.
inline std::vector<tapegrad::nn::QAPair> generate(std::size_t n, tapegrad::Generator& gen, std::map<std::string, int>& format_of) {
  std::set<int> seen;
  std::vector<tapegrad::nn::QAPair> pairs;
  while (pairs.size() < n) {
    const int y = 1950 + int(gen.below(100)), m = 1 + int(gen.below(12));
    const int d = 1 + int(gen.below(days_in_month(y, m)));
    if (!seen.insert(y * 10000 + m * 100 + d).second) continue;
    const int fmt = int(gen.below(kFormats));
    pairs.push_back({format_date(y, m, d, fmt), std::to_string(y) + "-" + two(m) + "-" + two(d), 0});
    format_of[pairs.back().question] = fmt;
  }
  return pairs;
}

}  // namespace example::dates

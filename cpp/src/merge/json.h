// A small streaming JSON writer for the reports the library returns.
#ifndef VPERFETTO_MERGE_JSON_H_
#define VPERFETTO_MERGE_JSON_H_

#include <cstdint>
#include <cstdio>
#include <string>

namespace vpmerge {

// Minimal JSON writer (reports of the merge and of inspect).
class Json {
 public:
  std::string s;
  void Str(const std::string& v) {
    s += '"';
    for (unsigned char c : v) {
      if (c == '"' || c == '\\') s += '\\', s += static_cast<char>(c);
      else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        s += buf;
      } else s += static_cast<char>(c);
    }
    s += '"';
  }
  void Key(const char* k) {
    Sep();
    Str(k);
    s += ':';
    fresh_ = true;
  }
  void Open(char c) {
    Sep();
    s += c;
    fresh_ = true;
  }
  void Close(char c) {
    s += c;
    fresh_ = false;
  }
  void Int(int64_t v) { Sep(); s += std::to_string(v); }
  void UInt(uint64_t v) { Sep(); s += std::to_string(v); }
  void Bool(bool v) { Sep(); s += v ? "true" : "false"; }
  void String(const std::string& v) { Sep(); Str(v); }

 private:
  void Sep() {
    if (!fresh_ && !s.empty() && s.back() != '[' && s.back() != '{' && s.back() != ':') s += ',';
    fresh_ = false;
  }
  bool fresh_ = true;
};

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_JSON_H_

#include "Print.h"

#include <stdio.h>

size_t Print::write(const uint8_t *buffer, size_t size) {
  size_t n = 0;
  while (size--) {
    if (!write(*buffer++)) break;
    n++;
  }
  return n;
}

size_t Print::print(const char str[]) {
  return write(str);
}

size_t Print::print(char c) {
  return write((uint8_t)c);
}

size_t Print::print(unsigned char n, int base) {
  return printNumber(n, base, false);
}

size_t Print::print(int n, int base) {
  return print((long)n, base);
}

size_t Print::print(unsigned int n, int base) {
  return printNumber(n, base, false);
}

size_t Print::print(long n, int base) {
  if (base == DEC && n < 0) return printNumber(0ul - (unsigned long)n, base, true);
  return printNumber((unsigned long)n, base, false);
}

size_t Print::print(unsigned long n, int base) {
  return printNumber(n, base, false);
}

size_t Print::print(double n, int digits) {
  char text[64];
  snprintf(text, sizeof(text), "%.*f", digits < 0 ? 0 : digits, n);
  return write(text);
}

size_t Print::print(const Printable &p) {
  return p.printTo(*this);
}

size_t Print::println() {
  return write("\r\n");
}

size_t Print::println(const char str[]) {
  size_t k = print(str);
  return k + println();
}
size_t Print::println(char c) {
  size_t k = print(c);
  return k + println();
}
size_t Print::println(const Printable &p) {
  size_t k = print(p);
  return k + println();
}
size_t Print::println(unsigned char n, int base) {
  size_t k = print(n, base);
  return k + println();
}
size_t Print::println(int n, int base) {
  size_t k = print(n, base);
  return k + println();
}
size_t Print::println(unsigned int n, int base) {
  size_t k = print(n, base);
  return k + println();
}
size_t Print::println(long n, int base) {
  size_t k = print(n, base);
  return k + println();
}
size_t Print::println(unsigned long n, int base) {
  size_t k = print(n, base);
  return k + println();
}
size_t Print::println(double n, int digits) {
  size_t k = print(n, digits);
  return k + println();
}

size_t Print::printNumber(unsigned long n, int base, bool negative) {
  char buf[8 * sizeof(long) + 2];
  char *p = &buf[sizeof(buf) - 1];
  *p = '\0';
  if (base < 2) base = 10;
  do {
    const unsigned long digit = n % (unsigned long)base;
    n /= (unsigned long)base;
    *--p = (char)(digit < 10 ? '0' + digit : 'A' + digit - 10);
  } while (n);
  if (negative) *--p = '-';
  return write(p);
}

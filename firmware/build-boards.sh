#!/usr/bin/env bash
# Real cross builds of the sketches for the boards (issue 11), as arduino-cli
# would do them, without arduino-cli (its board-package servers are not
# reachable from CI): Debian's cross compilers and the board cores and libraries
# of the vendor tree (read-only; its PROVENANCE.md gives versions, flags and
# include folders).
#
#   Feather M0 WiFi: sketch + SensorlogClient + WiFi101 + FlashStorage +
#                    Adafruit_SleepyDog + the Adafruit SAMD core, linked to an .elf;
#                    arm-none-eabi-size is printed and the build fails when the
#                    image exceeds the flash or leaves less than 8 KiB of RAM for
#                    the stack and the heap.
#   ESP8266 NodeMCU: sketch + SensorlogClient (+ EEPROM) compiled only: linking
#                    needs the core's prebuilt SDK, BearSSL and libstdc++ blobs,
#                    which the vendor tree does not hold.
# Each also with SENSORLOG_WITH_DHT22 and with SENSORLOG_TLS. Project code (sketches, the
# library) builds with -Wall -Wextra -Werror; vendor code with its own flags and
# its headers as system headers.
#
#   firmware/build-boards.sh               everything, outputs in firmware/build/boards
#   SENSORLOG_ARDUINO_VENDOR=/path ...     another vendor tree (default ../shared/vendor/arduino
#                                          from the repository root)
#   JOBS=1 ...                             compile jobs (default: number of CPUs)
#   SENSORLOG_BOARD_DEFS="-DSENSORLOG_BUFFER_READINGS=100 ..."
#                                          settings for every variant, as -D flags
#
# Object files of the vendor code are kept in firmware/build/boards/cache between
# runs (rebuilt when their flags or sources change); project code is always
# recompiled.
set -euo pipefail

FIRMWARE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$FIRMWARE/.." && pwd)"
VENDOR="${SENSORLOG_ARDUINO_VENDOR:-$REPO/../shared/vendor/arduino}"
OUT="$FIRMWARE/build/boards"
LIB="$FIRMWARE/libraries/SensorlogClient/src"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
read -r -a BOARD_DEFS <<<"${SENSORLOG_BOARD_DEFS:-}"

# The Feather M0's limits: 256 KiB of flash of which the bootloader takes 8 KiB;
# 32 KiB of RAM, of which the stack and heap need 8 KiB at least.
FEATHER_FLASH_BYTES=$((256 * 1024 - 8 * 1024))
FEATHER_RAM_BYTES=$((32 * 1024))
FEATHER_MIN_FREE_RAM=$((8 * 1024))

say() { printf '== %s\n' "$*"; }
die() {
  printf 'build-boards: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------------------
# Toolchains

NEWLIB_CXX=/usr/include/newlib/c++/12.2.1
install_toolchains() {
  local need=()
  command -v arm-none-eabi-g++ >/dev/null || need+=(gcc-arm-none-eabi)
  [ -e /usr/lib/arm-none-eabi/newlib/libc_nano.a ] || need+=(libnewlib-arm-none-eabi)
  [ -d "$NEWLIB_CXX" ] || need+=(libstdc++-arm-none-eabi-newlib)
  command -v xtensa-lx106-elf-g++ >/dev/null || need+=(gcc-xtensa-lx106)
  [ "${#need[@]}" -eq 0 ] && return 0
  say "installing ${need[*]}"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# ---------------------------------------------------------------------------
# Compiling, with a cache for vendor objects

# compile CC FLAGS_FILE SOURCE OBJECT: one compile job in the background, at most
# $JOBS at a time. Failures are collected and reported by wait_all.
FAILED="$OUT/.failed"
compile() {
  local cc=$1 flags=$2 src=$3 obj=$4
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  mkdir -p "$(dirname "$obj")"
  (
    # Into a temporary file first: an interrupted run leaves no truncated
    # object behind for the cache to reuse.
    if ! "$cc" @"$flags" -c "$src" -o "$obj.tmp" 2>"$obj.log"; then
      cat "$obj.log" >&2
      echo "$src" >>"$FAILED"
    else
      mv "$obj.tmp" "$obj"
      [ -s "$obj.log" ] && cat "$obj.log" >&2
    fi
  ) &
}

wait_all() {
  while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || true; done
  wait || true
  if [ -s "$FAILED" ]; then
    die "compile failed: $(tr '\n' ' ' <"$FAILED")"
  fi
}

# flags_file NAME FLAG...: writes the flags one per line (a response file for
# gcc's @file) and prints its path; the cache folder of a flags file is named
# after its checksum, so that other flags never reuse stale objects.
flags_file() {
  local name=$1
  shift
  local f="$OUT/flags/$name"
  mkdir -p "$OUT/flags"
  printf '%s\n' "$@" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/.*/"&"/' >"$f"
  echo "$f"
}

# vendor_objects CC FLAGS_FILE CACHE_NAME SOURCE...: compiles vendor sources into
# the cache unless up to date (the vendor tree is read-only: a source newer than
# its object is the only change to look for); the file LAST_LIST names lists the
# object paths in the order given.
vendor_objects() {
  local cc=$1 flags=$2 name=$3
  shift 3
  local sum
  sum=$( (cat "$flags"; "$cc" --version | head -1) | md5sum | cut -c1-12)
  local dir="$OUT/cache/$name-$sum"
  local src obj
  mkdir -p "$dir"
  rm -f "$dir.list.tmp"
  for src in "$@"; do
    obj="$dir/${src#"$VENDOR"/}.o"
    if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ]; then
      compile "$cc" "$flags" "$src" "$obj"
    fi
    echo "$obj" >>"$dir.list.tmp"
  done
  mv "$dir.list.tmp" "$dir.list"
  LAST_LIST="$dir.list"
}

# The .ino as arduino-cli hands it to the compiler (firmware/ino2cpp.awk).
ino_to_cpp() {
  local ino=$1 out=$2
  mkdir -p "$(dirname "$out")"
  awk -v path="$ino" -f "$FIRMWARE/ino2cpp.awk" "$ino" "$ino" >"$out"
}

# project_library CXX FLAGS_FILE BOARD: SensorlogClient's objects for BOARD in
# LIB_OBJECTS, compiled at the first call of a run (always: it is project code),
# reused by the board's other variants.
declare -A LIB_BUILT=()
project_library() {
  local cxx=$1 flags=$2 board=$3 dir="$OUT/lib-$3" f
  LIB_OBJECTS=()
  if [ -z "${LIB_BUILT[$board]:-}" ]; then
    rm -rf "$dir"
    for f in "$LIB"/*.cpp; do compile "$cxx" "$flags" "$f" "$dir/$(basename "$f").o"; done
    LIB_BUILT[$board]=1
  fi
  for f in "$LIB"/*.cpp; do LIB_OBJECTS+=("$dir/$(basename "$f").o"); done
}

sources_in() { find "$@" -maxdepth 1 -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.S' \) | sort; }

# ---------------------------------------------------------------------------
# Feather M0 WiFi (SAMD21G18A, Adafruit SAMD core)

SAMD="$VENDOR/samd"
feather_common_flags() {
  echo -mcpu=cortex-m0plus -mthumb -Os -g -ffunction-sections -fdata-sections \
    --param max-inline-insns-single=500 \
    -DF_CPU=48000000L -DARDUINO=10819 -DARDUINO_SAMD_ZERO -DARDUINO_ARCH_SAMD -DARDUINO_SAMD_ADAFRUIT \
    -D__SAMD21G18A__ -DADAFRUIT_FEATHER_M0 -DARDUINO_SAMD_FEATHER_M0 -DARM_MATH_CM0PLUS \
    -DUSB_VID=0x239A -DUSB_PID=0x800B -DUSBCON -DUSB_CONFIG_POWER=100
}
FEATHER_CXX_ONLY=(-std=gnu++11 -fno-threadsafe-statics -fno-rtti -fno-exceptions)
FEATHER_INCLUDE_DIRS=(
  "$SAMD/CMSIS/Core/Include" "$SAMD/CMSIS/DSP/Include" "$SAMD/CMSIS-Atmel"
  "$SAMD/core/cores/arduino" "$SAMD/core/variants/feather_m0"
  "$SAMD/core/libraries/SPI" "$SAMD/core/libraries/Adafruit_ZeroDMA"
  "$SAMD/WiFi101/src"
  "$VENDOR/libraries/FlashStorage/src" "$VENDOR/libraries/Adafruit_SleepyDog"
  "$VENDOR/libraries/DHT" "$VENDOR/libraries/Adafruit_Sensor"
)

# The USB strings go in as macros holding C string literals, as the IDE passes them.
USB_STRINGS=('-DUSB_MANUFACTURER="Adafruit"' '-DUSB_PRODUCT="Feather M0"')

# build_feather VARIANT [-DSETTING=...]...
build_feather() {
  local variant=$1
  shift
  local defs=("$@" "${BOARD_DEFS[@]}") dht=0
  [[ " ${defs[*]} " == *" -DSENSORLOG_WITH_DHT22=1 "* ]] && dht=1
  local dir="$OUT/$variant"
  rm -rf "$dir"
  mkdir -p "$dir"
  local inc=() d
  for d in "${FEATHER_INCLUDE_DIRS[@]}"; do inc+=("-I$d"); done
  local sys=()
  for d in "${FEATHER_INCLUDE_DIRS[@]}"; do sys+=("-isystem" "$d"); done
  # shellcheck disable=SC2207
  local common=($(feather_common_flags))

  # Vendor code: the core, the variant, SPI, ZeroDMA, WiFi101, FlashStorage,
  # SleepyDog (and DHT): no project warnings, its own -Werror=return-type.
  local vc vcxx vs
  vc=$(flags_file feather-vendor-c "${common[@]}" -std=gnu11 -w "${USB_STRINGS[@]}" "${inc[@]}")
  vcxx=$(flags_file feather-vendor-cxx "${common[@]}" "${FEATHER_CXX_ONLY[@]}" -w "${USB_STRINGS[@]}" "${inc[@]}")
  vs=$(flags_file feather-vendor-S "${common[@]}" -x assembler-with-cpp "${inc[@]}")
  local core_c=() core_cxx=() core_s=() f
  while read -r f; do
    case "$f" in
      *.c) core_c+=("$f") ;;
      *.cpp) core_cxx+=("$f") ;;
      *.S) core_s+=("$f") ;;
    esac
  done < <(
    sources_in "$SAMD/core/cores/arduino" "$SAMD/core/cores/arduino/USB" "$SAMD/core/cores/arduino/avr" \
      "$SAMD/core/variants/feather_m0" "$SAMD/core/libraries/SPI" "$SAMD/core/libraries/Adafruit_ZeroDMA"
    find "$SAMD/WiFi101/src" -type f \( -name '*.c' -o -name '*.cpp' \) ! -name '*_avr.c' | sort
    sources_in "$VENDOR/libraries/FlashStorage/src" "$VENDOR/libraries/Adafruit_SleepyDog" \
      "$VENDOR/libraries/Adafruit_SleepyDog/utility"
    if [ "$dht" = 1 ]; then sources_in "$VENDOR/libraries/DHT" "$VENDOR/libraries/Adafruit_Sensor"; fi
  )
  local lists=()
  vendor_objects arm-none-eabi-gcc "$vc" "feather-c" "${core_c[@]}"
  lists+=("$LAST_LIST")
  vendor_objects arm-none-eabi-g++ "$vcxx" "feather-cxx" "${core_cxx[@]}"
  lists+=("$LAST_LIST")
  vendor_objects arm-none-eabi-gcc "$vs" "feather-S" "${core_s[@]}"
  lists+=("$LAST_LIST")

  # Project code: the sketch and SensorlogClient, every warning an error.
  # (SensorlogClient does not depend on the sketch's settings: built once per board.)
  local pcxx
  pcxx=$(flags_file "$variant-project" "${common[@]}" "${FEATHER_CXX_ONLY[@]}" \
    -Wall -Wextra -Werror -DSENSORLOG_NO_SECRETS_H "${defs[@]}" "${USB_STRINGS[@]}" \
    "-I$FIRMWARE/feather_m0" "-I$LIB" "${sys[@]}")
  ino_to_cpp "$FIRMWARE/feather_m0/feather_m0.ino" "$dir/sketch/feather_m0.ino.cpp"
  local objects=("$dir/sketch/feather_m0.ino.cpp.o")
  compile arm-none-eabi-g++ "$pcxx" "$dir/sketch/feather_m0.ino.cpp" "${objects[0]}"
  local plib
  plib=$(flags_file feather_m0-lib "${common[@]}" "${FEATHER_CXX_ONLY[@]}" \
    -Wall -Wextra -Werror "${USB_STRINGS[@]}" "-I$LIB" "${sys[@]}")
  project_library arm-none-eabi-g++ "$plib" feather_m0
  objects+=("${LIB_OBJECTS[@]}")
  wait_all

  local l
  for l in "${lists[@]}"; do mapfile -t -O "${#objects[@]}" objects <"$l"; done
  # As platform.txt links: gc-sections, newlib-nano, no system calls.
  arm-none-eabi-g++ -mcpu=cortex-m0plus -mthumb -Os -Wl,--gc-sections \
    "-T$SAMD/core/variants/feather_m0/linker_scripts/gcc/flash_with_bootloader.ld" \
    "-Wl,-Map,$dir/$variant.map" --specs=nano.specs --specs=nosys.specs \
    -Wl,--cref -Wl,--check-sections -Wl,--unresolved-symbols=report-all -Wl,--warn-common \
    -o "$dir/$variant.elf" "${objects[@]}" -Wl,--start-group -lm -Wl,--end-group
  arm-none-eabi-objcopy -O binary "$dir/$variant.elf" "$dir/$variant.bin"

  arm-none-eabi-size "$dir/$variant.elf"
  local text data bss
  read -r text data bss _ < <(arm-none-eabi-size "$dir/$variant.elf" | tail -1)
  local flash=$((text + data)) ram=$((data + bss))
  local free_ram=$((FEATHER_RAM_BYTES - ram))
  printf '%s: flash %d of %d bytes (%d%%), RAM %d of %d bytes static, %d left for stack and heap\n' \
    "$variant" "$flash" "$FEATHER_FLASH_BYTES" $((flash * 100 / FEATHER_FLASH_BYTES)) \
    "$ram" "$FEATHER_RAM_BYTES" "$free_ram"
  [ "$flash" -le "$FEATHER_FLASH_BYTES" ] ||
    die "$variant: the image ($flash bytes) exceeds the Feather M0's flash ($FEATHER_FLASH_BYTES bytes)"
  [ "$free_ram" -ge "$FEATHER_MIN_FREE_RAM" ] ||
    die "$variant: only $free_ram bytes of RAM left for the stack and heap (at least $FEATHER_MIN_FREE_RAM needed)"
}

# ---------------------------------------------------------------------------
# ESP8266 NodeMCU 1.0 (ESP8266 core 3.x): compile only

ESP="$VENDOR/esp8266"
# build_esp8266 VARIANT [-DSETTING=...]...
build_esp8266() {
  local variant=$1
  shift
  local defs=("$@" "${BOARD_DEFS[@]}") dht=0
  [[ " ${defs[*]} " == *" -DSENSORLOG_WITH_DHT22=1 "* ]] && dht=1
  local dir="$OUT/$variant"
  rm -rf "$dir"
  mkdir -p "$dir"
  : >"$dir/build.opt" # the core's build.opt (global build options): empty
  local dirs=(
    "$ESP/core/cores/esp8266" "$ESP/core/variants/nodemcu"
    "$ESP/core/libraries/ESP8266WiFi/src" "$ESP/core/libraries/EEPROM"
    "$VENDOR/libraries/DHT" "$VENDOR/libraries/Adafruit_Sensor"
    "$ESP/core/tools/sdk/include" "$ESP/core/tools/sdk/lwip2/include"
  )
  # Debian's xtensa GCC has no C++ headers: the target-independent ones of
  # libstdc++-arm-none-eabi-newlib serve; C headers are newlib-xtensa's.
  local tail=(-isystem "$NEWLIB_CXX" -isystem "$NEWLIB_CXX/arm-none-eabi"
    -isystem "$ESP/newlib-xtensa-include/include")
  local common=(-std=gnu++17 -Os -g -free -fipa-pta -Werror=return-type -mlongcalls
    -mtext-section-literals -fno-rtti -falign-functions=4 -ffunction-sections -fdata-sections
    -fno-exceptions -DFP_IN_IROM -D__ets__ -DICACHE_FLASH -U__STRICT_ANSI__ -D_GNU_SOURCE
    -DESP8266 -DNONOSDK22x_190703=1 -DF_CPU=80000000L -DLWIP_OPEN_SRC -DTCP_MSS=536
    -DLWIP_FEATURES=1 -DLWIP_IPV6=0 -DARDUINO=10819 -DARDUINO_ESP8266_NODEMCU_ESP12E
    -DARDUINO_ARCH_ESP8266 '-DARDUINO_BOARD="ESP8266_NODEMCU_ESP12E"' -DFLASHMODE_DIO
    -DMMU_IRAM_SIZE=0x8000 -DMMU_ICACHE_SIZE=0x8000 -DVTABLES_IN_FLASH -DLED_BUILTIN=2
    "@$dir/build.opt")
  local inc=() sys=() d
  for d in "${dirs[@]}"; do
    inc+=("-I$d")
    sys+=(-isystem "$d")
  done

  local objects=()
  local vcxx
  vcxx=$(flags_file "$variant-vendor-cxx" "${common[@]}" -w "${inc[@]}" "${tail[@]}")
  local vendor=("$ESP/core/libraries/EEPROM/EEPROM.cpp")
  if [ "$dht" = 1 ]; then
    vendor+=("$VENDOR/libraries/DHT/DHT.cpp" "$VENDOR/libraries/Adafruit_Sensor/Adafruit_Sensor.cpp")
  fi
  vendor_objects xtensa-lx106-elf-g++ "$vcxx" "$variant-cxx" "${vendor[@]}"

  local pcxx
  pcxx=$(flags_file "$variant-project" "${common[@]}" -Wall -Wextra -Werror \
    -DSENSORLOG_NO_SECRETS_H "${defs[@]}" \
    "-I$FIRMWARE/esp8266" "-I$LIB" "${sys[@]}" "${tail[@]}")
  ino_to_cpp "$FIRMWARE/esp8266/esp8266.ino" "$dir/sketch/esp8266.ino.cpp"
  objects+=("$dir/sketch/esp8266.ino.cpp.o")
  compile xtensa-lx106-elf-g++ "$pcxx" "$dir/sketch/esp8266.ino.cpp" "${objects[-1]}"
  local plib
  plib=$(flags_file esp8266-lib "${common[@]}" -Wall -Wextra -Werror "-I$LIB" "${sys[@]}" "${tail[@]}")
  project_library xtensa-lx106-elf-g++ "$plib" esp8266
  objects+=("${LIB_OBJECTS[@]}")
  wait_all
  xtensa-lx106-elf-size -t "${objects[@]}" | tail -1 |
    awk -v v="$variant" '{ printf "%s: project code compiled, not linked: text %d, data %d, bss %d bytes (objects, before --gc-sections)\n", v, $1, $2, $3 }'
  # On the ESP8266 constant data (.rodata) is copied to RAM at boot, unlike
  # PROGMEM (.irom0.pstr...): this is what F()/PSTR save.
  xtensa-lx106-elf-size -A "${objects[@]}" |
    awk -v v="$variant" '$1 ~ /^\.rodata/ { ram += $2 } $1 ~ /^\.irom0\.pstr/ { flash += $2 }
      END { printf "%s: project constants in RAM (.rodata) %d bytes, in flash (PSTR) %d bytes\n", v, ram, flash }'
}

# ---------------------------------------------------------------------------

main() {
  [ -f "$VENDOR/PROVENANCE.md" ] ||
    die "no vendor tree at $VENDOR (set SENSORLOG_ARDUINO_VENDOR; CI clones the repository with ../shared beside it)"
  install_toolchains
  mkdir -p "$OUT"
  rm -f "$FAILED"
  local started=$SECONDS
  say "Feather M0 WiFi: compile and link (arm-none-eabi-gcc $(arm-none-eabi-gcc -dumpversion))"
  build_feather feather_m0
  build_feather feather_m0_dht22 -DSENSORLOG_WITH_DHT22=1
  build_feather feather_m0_tls -DSENSORLOG_TLS=1
  say "ESP8266 NodeMCU: compile only (xtensa-lx106-elf-gcc $(xtensa-lx106-elf-gcc -dumpversion))"
  build_esp8266 esp8266
  build_esp8266 esp8266_dht22 -DSENSORLOG_WITH_DHT22=1
  # A placeholder fingerprint: what `sensorlog tls fingerprint` prints goes in secrets.h.
  build_esp8266 esp8266_tls -DSENSORLOG_TLS=1 \
    '-DSENSORLOG_TLS_FINGERPRINT="00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33"'
  echo "ESP8266: not linked: the core's prebuilt SDK, BearSSL and libstdc++ libraries (built for its own toolchain) are not in the vendor tree."
  say "board builds done in $((SECONDS - started)) s; outputs in ${OUT#"$REPO"/}"
}

main "$@"

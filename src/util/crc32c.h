// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 and PostgreSQL's WAL:
// polynomial 0x1EDC6F41 (0x82F63B78 reflected), initial value and final
// xor 0xFFFFFFFF. Software, one table lookup per byte: what it protects (a
// state record) is a few hundred bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pgslotd {

uint32_t Crc32c(std::string_view data);

}  // namespace pgslotd

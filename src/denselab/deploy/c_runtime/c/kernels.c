/*
 * The integer arithmetic of TensorFlow Lite's int8 FULLY_CONNECTED and SOFTMAX reference
 * kernels, which TensorFlow Lite Micro runs: the gemmlowp fixed-point helpers, written in
 * C99 from their published definitions, so that every output equals TFLM's bit for bit.
 * Right shifts of negative numbers are arithmetic, as on every compiler TFLM supports.
 * Every constant wider than 16 bits is an int32_t or int64_t, never a plain int, so that the
 * arithmetic is the same where int has 16 bits (AVR).
 */

/* The weight tables start on a word boundary, which the Cortex-M4's LDRD needs. The
 * fixed-point helpers that many places call stay out of line: inlined, the AVR's copies of
 * them took a kilobyte of flash. */
#if defined(__GNUC__)
#define DL_ALIGNED __attribute__((aligned(4)))
#define DL_OUT_OF_LINE __attribute__((noinline))
#else
#define DL_ALIGNED
#define DL_OUT_OF_LINE
#endif

#if defined(__AVR__)
/* AVR's flash is an address space of its own: tables left in the data space would be copied
 * to the Uno's 2 KB of RAM at start-up. They stay in flash (as avr-libc's PROGMEM does) and
 * are read with LPM (as its pgm_read_byte, pgm_read_word and pgm_read_dword do), written out
 * here so that these sources need nothing beyond <stdint.h> on every target. A flash address
 * is 16 bits: LPM reaches the first 64 KB, all of an ATmega328P's 32 KB. */
#define DL_ROM __attribute__((__progmem__))

static inline int8_t dl_rom_i8(const void *address) {
  uint8_t value;
  __asm__ __volatile__("lpm %0, Z" : "=r"(value) : "z"((uint16_t)address));
  return (int8_t)value;
}

static inline uint16_t dl_rom_u16(const void *address) {
  uint16_t value, z = (uint16_t)address;
  __asm__ __volatile__("lpm %A0, Z+\n\tlpm %B0, Z" : "=r"(value), "=z"(z) : "1"(z));
  return value;
}

static inline int32_t dl_rom_i32(const void *address) {
  uint32_t value;
  uint16_t z = (uint16_t)address;
  __asm__ __volatile__("lpm %A0, Z+\n\tlpm %B0, Z+\n\tlpm %C0, Z+\n\tlpm %D0, Z" : "=r"(value), "=z"(z) : "1"(z));
  return (int32_t)value;
}

/* acc + x * w: one MULS (whose C flag is the product's sign) and a sign-extending add, eight
 * cycles. Written in C, avr-gcc makes the product a call to its 16 x 16 -> 32-bit
 * multiplication, and that call took most of an inference. */
static inline int32_t dl_multiply_add(int32_t acc, int8_t x, int8_t w) {
  uint8_t sign;
  __asm__("muls %2, %3\n\t"
          "sbc %1, %1\n\t"
          "add %A0, r0\n\t"
          "adc %B0, r1\n\t"
          "adc %C0, %1\n\t"
          "adc %D0, %1\n\t"
          "clr __zero_reg__"
          : "+r"(acc), "=&r"(sign) : "d"(x), "d"(w));
  return acc;
}

/* acc + *x++ * (*w++ - 128), the stored weight from flash back to its signed value: LD X+, LPM
 * Z+, SUBI, MULS and the add, 14 cycles. Taking the 128 off here costs the AVR a cycle per
 * multiply-add where the other cores' dl_input_sum costs a pass over the inputs, and 80 bytes
 * less flash, which the Uno is short of. In C, avr-gcc reads x[1], x[2] ... with an ADIW and
 * an SBIW each, since X has no displacement. Always inlined: with the SUBI, avr-gcc -Os made it
 * a call, and an inference three times slower. */
__attribute__((always_inline)) static inline int32_t dl_multiply_add_next(int32_t acc, const int8_t **x,
                                                                       const uint8_t **w) {
  uint8_t sign, input, weight;
  __asm__("ld %3, X+\n\t"
          "lpm %4, Z+\n\t"
          "subi %4, 0x80\n\t"
          "muls %3, %4\n\t"
          "sbc %1, %1\n\t"
          "add %A0, r0\n\t"
          "adc %B0, r1\n\t"
          "adc %C0, %1\n\t"
          "adc %D0, %1\n\t"
          "clr __zero_reg__"
          : "+r"(acc), "=&r"(sign), "+x"(*x), "=&d"(input), "=&d"(weight), "+z"(*w));
  return acc;
}

/* acc plus the dot product of x[0 .. end), a multiple of four inputs, with the weights from w:
 * four consecutive weights, then `skip` bytes passed over (12 for a row of a four-row block,
 * 0 for a row on its own). A function of its own, so that acc stays in registers: inside
 * dl_dense avr-gcc spills it to the stack on every step. */
__attribute__((noinline))
static int32_t dl_dot(int32_t acc, const int8_t *x, const int8_t *end, const uint8_t *w, uint8_t skip) {
  while (x != end) {
    acc = dl_multiply_add_next(acc, &x, &w);
    acc = dl_multiply_add_next(acc, &x, &w);
    acc = dl_multiply_add_next(acc, &x, &w);
    acc = dl_multiply_add_next(acc, &x, &w);
    w += skip;
  }
  return acc;
}

#define DL_READ_I8(p) dl_rom_i8(p)
#define DL_READ_I32(p) dl_rom_i32(p)
#define DL_READ_PTR(p) ((const void *)dl_rom_u16(p))
#else
/* One address space: a table is read as any constant is, with the plain loads the Cortex-M
 * inner loop is measured with. */
#define DL_ROM
#define DL_READ_I8(p) (*(p))
#define DL_READ_I32(p) (*(p))
#define DL_READ_PTR(p) ((const void *)*(p))
#endif

/* In flash with DL_ROM, as the tables it points to: every field is read with DL_READ_*. */
typedef struct {
  const uint8_t *weights;    /* the converter's int8 weights plus 128, in the order DL_BLOCK describes */
  const int32_t *bias;       /* the int32 bias minus input_zero_point * sum(weights[o]) */
  const int32_t *multiplier; /* per output: real scale = multiplier * 2^(shift - 31) */
  const int8_t *shift;
  int32_t inputs, outputs;
  int32_t output_zero_point, activation_min; /* activation_max is 127 */
} dl_layer;

/* gemmlowp's SaturatingRoundingDoublingHighMul: the high 32 bits of 2ab, rounded. gemmlowp
 * writes it as (ab + (ab >= 0 ? 2^30 : 1 - 2^30)) / 2^31 with division toward zero, which
 * equals floor((ab + 2^30) / 2^31) for every ab (tests/test_c_runtime.py proves it over the
 * edge cases and at random): one add and one shift where the division cost a branch and a
 * 64-bit adjustment, and on the AVR a call to its 64-bit division. */
#if !defined(DL_NARROW_MULTIPLY) && defined(__ARM_ARCH_6M__)
#define DL_NARROW_MULTIPLY /* no 32 x 32 -> 64-bit multiply in hardware */
#endif

#ifdef DL_NARROW_MULTIPLY
/* The same from four 16 x 16 -> 32-bit products, for the Cortex-M0+, whose MULS keeps only the
 * low 32 bits: 3 % fewer instructions for Dense(20) than GCC's 64-bit multiply call. (On the
 * AVR the 64-bit product was faster: avr-gcc multiplies these 16-bit halves as 32-bit
 * numbers.) ab = hh 2^32 + (hl + lh) 2^16 + ll. */
DL_OUT_OF_LINE static int32_t dl_doubling_high_mul(int32_t a, int32_t b) {
  const int16_t a_high = (int16_t)(a >> 16), b_high = (int16_t)(b >> 16);
  const uint16_t a_low = (uint16_t)((uint32_t)a & 0xFFFFu), b_low = (uint16_t)((uint32_t)b & 0xFFFFu);
  const uint32_t low_low = (uint32_t)a_low * (uint32_t)b_low;
  const int32_t high_low = (int32_t)a_high * (int32_t)b_low, low_high = (int32_t)a_low * (int32_t)b_high;
  const uint32_t middle = (low_low >> 16) + ((uint32_t)high_low & 0xFFFFu) + ((uint32_t)low_high & 0xFFFFu);
  const uint32_t low = ((middle & 0xFFFFu) << 16 | (low_low & 0xFFFFu)) + ((uint32_t)1 << 30);
  int32_t high = (int32_t)a_high * (int32_t)b_high + (high_low >> 16) + (low_high >> 16) + (int32_t)(middle >> 16);
  if (a == b && a == INT32_MIN) return INT32_MAX;
  if (low < ((uint32_t)1 << 30)) ++high; /* the carry of + 2^30 */
  return (int32_t)((uint32_t)high << 1 | low >> 31);
}
#else
DL_OUT_OF_LINE static int32_t dl_doubling_high_mul(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}
#endif

/* gemmlowp's RoundingDivideByPOT: x / 2^exponent, rounded half away from zero. */
static int32_t dl_divide_by_pot(int32_t x, int exponent) {
  /* exponent is 0 to 31: a 32-bit shift, where a 64-bit one was a library call on the Cortex-M. */
  const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent: x * 2^exponent, saturated. */
static int32_t dl_multiply_by_pot(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - exponent)) - 1u); /* exponent is 1 to 31 */
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return (int32_t)((uint32_t)x << exponent);
}

/* TFLite's MultiplyByQuantizedMultiplier (double rounding, TFLM's default build). */
static int32_t dl_requantize(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return dl_divide_by_pot(dl_doubling_high_mul((int32_t)((uint32_t)x << left), multiplier), right);
}

/* The weights' order, chosen at export time (source.py's weight_table) for kernels that reuse
 * each input across several rows. The rows go in blocks of DL_BLOCK: within a block, for each
 * group of four inputs, the four weights of the block's first row, then its second's, and so
 * on; after the groups, each row's last inputs % 4 weights. The rows after the last full block
 * follow one by one, in the converter's order. A block is 4 x inputs bytes, so every block
 * starts on a word boundary (the tables are DL_ALIGNED).
 * Each weight w is stored as w + 128, 0 to 255, so that the kernels widen it without a sign:
 * on the Cortex-M0+ that is LDRB alone, where a signed byte cost an SXTB more. The sum over x
 * of x (w + 128) is the sum of x w plus 128 times the sum of the inputs, which dl_dense takes
 * off once per layer (dl_input_sum); the AVR takes the 128 off each weight instead
 * (dl_multiply_add_next). */
#define DL_BLOCK 4
#define DL_WEIGHT_OFFSET 128

#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
/* ARMv7E-M (Cortex-M4 and M7): SXTB16 widens the inputs' bytes 0 and 2 of a word into two
 * signed 16-bit halves (with ROR #8, bytes 1 and 3), UXTB16 the weights' the same way without
 * a sign, and SMLAD adds both halves' products to an accumulator. Per group of four inputs and
 * four rows: one load of the inputs, two widenings shared by the four rows, two LDRDs of the
 * 16 weights, and per row two widenings and two SMLADs: 21 instructions for 16 multiply-adds,
 * and the loop's test once per two groups. Written as assembly because GCC -Os neither folds
 * the rotation into the widening nor keeps the loop in registers. The ACLE intrinsics of
 * <arm_acle.h> (part of the compiler) serve the single rows. */
#include <arm_acle.h>

static inline uint32_t dl_word(const int8_t *p) {
  uint32_t word;
  __builtin_memcpy(&word, p, 4); /* one LDR, unaligned where the input is */
  return word;
}

static inline int32_t dl_odd_bytes(uint32_t word) {
  int32_t halves;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(halves) : "r"(word));
  return halves;
}

static inline uint32_t dl_odd_weights(uint32_t word) {
  uint32_t halves;
  __asm__("uxtb16 %0, %1, ror #8" : "=r"(halves) : "r"(word));
  return halves;
}

/* The sum of the inputs: USADA8 adds four bytes' distances from zero, here the inputs plus 128
 * (their sign bits flipped), in one instruction; eight inputs per pass. Out of line: inlined
 * into dl_dense, GCC kept its pointer on the stack. */
DL_OUT_OF_LINE static int32_t dl_input_sum(const int8_t *x, int32_t inputs) {
  const int8_t *const pairs_end = x + (inputs & ~(int32_t)7), *const end = x + inputs;
  uint32_t offset_sum = 0;
  int32_t sum;
  for (; x != pairs_end; x += 8) {
    offset_sum = __usada8(dl_word(x) ^ 0x80808080u, 0, offset_sum);
    offset_sum = __usada8(dl_word(x + 4) ^ 0x80808080u, 0, offset_sum);
  }
  sum = (int32_t)offset_sum - 128 * (inputs & ~(int32_t)7);
  while (x != end) sum += *x++;
  return sum;
}

#define DL_TWO_ROWS(a, b) \
  "ldrd %[v0], %[v1], [%[w]], #8\n\t" \
  "uxtb16 %[t], %[v0]\n\t" "smlad %[" a "], %[even], %[t], %[" a "]\n\t" \
  "uxtb16 %[v0], %[v0], ror #8\n\t" "smlad %[" a "], %[odd], %[v0], %[" a "]\n\t" \
  "uxtb16 %[t], %[v1]\n\t" "smlad %[" b "], %[even], %[t], %[" b "]\n\t" \
  "uxtb16 %[v1], %[v1], ror #8\n\t" "smlad %[" b "], %[odd], %[v1], %[" b "]\n\t"

#define DL_GROUP \
  "ldr %[odd], [%[x]], #4\n\t" \
  "sxtb16 %[even], %[odd]\n\t" \
  "sxtb16 %[odd], %[odd], ror #8\n\t" \
  DL_TWO_ROWS("a0", "a1") \
  DL_TWO_ROWS("a2", "a3")

#define DL_GROUP_OPERANDS \
  : [x] "+r"(x), [w] "+r"(w), [odd] "=&r"(odd), [even] "=&r"(even), [v0] "=&r"(v0), [v1] "=&r"(v1), \
    [t] "=&r"(t), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3)

static const uint8_t *dl_block(const int8_t *x, int32_t inputs, const uint8_t *w, int32_t acc[DL_BLOCK]) {
  const int8_t *const pairs_end = x + (inputs & ~(int32_t)7);
  const int32_t rest = inputs & 3;
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], j;
  uint32_t odd, even, v0, v1, t;
  /* Two groups per pass, so that the loop's test is paid once per 32 multiply-adds. */
  if (x != pairs_end) {
    __asm__ volatile("1:\n\t" DL_GROUP DL_GROUP "cmp %[x], %[end]\n\t" "bne 1b"
                     DL_GROUP_OPERANDS : [end] "r"(pairs_end) : "cc", "memory");
  }
  if (inputs & 4) __asm__ volatile(DL_GROUP DL_GROUP_OPERANDS : : "memory");
  for (j = 0; j < rest; ++j) {
    a0 += (int32_t)x[j] * w[j];
    a1 += (int32_t)x[j] * w[rest + j];
    a2 += (int32_t)x[j] * w[2 * rest + j];
    a3 += (int32_t)x[j] * w[3 * rest + j];
  }
  acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
  return w + DL_BLOCK * rest;
}

static const uint8_t *dl_row(const int8_t *x, int32_t inputs, const uint8_t *w, int32_t *acc) {
  const int8_t *const groups_end = x + (inputs & ~(int32_t)3), *const end = x + inputs;
  int32_t a = *acc;
  for (; x != groups_end; x += 4, w += 4) {
    const uint32_t inputs4 = dl_word(x), weights4 = dl_word((const int8_t *)w);
    a = __smlad(__sxtb16(inputs4), __uxtb16(weights4), a);
    a = __smlad(dl_odd_bytes(inputs4), dl_odd_weights(weights4), a);
  }
  while (x != end) a += (int32_t)*x++ * *w++;
  *acc = a;
  return w;
}
#elif !defined(__AVR__) /* the AVR's dl_dense reads one row at a time, below */
#if defined(__ARM_ARCH_6M__) && defined(__GNUC__)
/* The Cortex-M0+ (ARMv6-M): each input is loaded once for the block's four rows, and each
 * weight costs LDRB, a one-cycle MULS and ADDS: 3.75 instructions per multiply-add with the
 * loop. In assembly because the four accumulators, the input, the weight and both pointers
 * need all eight low registers, and GCC -Os spilled the input to the stack. */
#define DL_M0_ROW(a, offset) \
  "ldrb %[t], [%[w], #" offset "]\n\t" "muls %[t], %[v], %[t]\n\t" "adds %[" a "], %[" a "], %[t]\n\t"
#define DL_M0_INPUT(k, o0, o1, o2, o3) \
  "ldrb %[v], [%[x], #" k "]\n\t" "sxtb %[v], %[v]\n\t" \
  DL_M0_ROW("a0", o0) DL_M0_ROW("a1", o1) DL_M0_ROW("a2", o2) DL_M0_ROW("a3", o3)
#define DL_BLOCK_GROUPS(x, groups_end, w, a0, a1, a2, a3) \
  do { \
    int32_t v, t; \
    if (x != groups_end) \
      __asm__ volatile(".syntax unified\n" "1:\n\t" \
                       DL_M0_INPUT("0", "0", "4", "8", "12") DL_M0_INPUT("1", "1", "5", "9", "13") \
                       DL_M0_INPUT("2", "2", "6", "10", "14") DL_M0_INPUT("3", "3", "7", "11", "15") \
                       "adds %[x], #4\n\t" "adds %[w], #16\n\t" "cmp %[x], %[end]\n\t" "bne 1b\n\t" \
                       ".syntax divided" /* GCC wraps Thumb-1 assembly in divided syntax */ \
                       : [x] "+l"(x), [w] "+l"(w), [v] "=&l"(v), [t] "=&l"(t), \
                         [a0] "+l"(a0), [a1] "+l"(a1), [a2] "+l"(a2), [a3] "+l"(a3) \
                       : [end] "h"(groups_end) : "cc", "memory"); \
  } while (0)
#else
/* Portable C99: each input is loaded once for the block's four rows. */
#define DL_BLOCK_GROUPS(x, groups_end, w, a0, a1, a2, a3) \
  do { \
    int32_t v; \
    for (; x != groups_end; x += 4, w += 4 * DL_BLOCK) { \
      v = x[0], a0 += v * w[0], a1 += v * w[4], a2 += v * w[8], a3 += v * w[12]; \
      v = x[1], a0 += v * w[1], a1 += v * w[5], a2 += v * w[9], a3 += v * w[13]; \
      v = x[2], a0 += v * w[2], a1 += v * w[6], a2 += v * w[10], a3 += v * w[14]; \
      v = x[3], a0 += v * w[3], a1 += v * w[7], a2 += v * w[11], a3 += v * w[15]; \
    } \
  } while (0)
#endif

static const uint8_t *dl_block(const int8_t *x, int32_t inputs, const uint8_t *w, int32_t acc[DL_BLOCK]) {
  const int8_t *const groups_end = x + (inputs & ~(int32_t)3);
  const int32_t rest = inputs & 3;
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], j, v;
  DL_BLOCK_GROUPS(x, groups_end, w, a0, a1, a2, a3);
  for (j = 0; j < rest; ++j) {
    v = x[j], a0 += v * w[j], a1 += v * w[rest + j], a2 += v * w[2 * rest + j], a3 += v * w[3 * rest + j];
  }
  acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
  return w + DL_BLOCK * rest;
}

static const uint8_t *dl_row(const int8_t *x, int32_t inputs, const uint8_t *w, int32_t *acc) {
  const int8_t *const end = x + inputs;
  int32_t a = *acc;
  while (x != end) a += (int32_t)*x++ * *w++;
  *acc = a;
  return w;
}
#endif

#if !(defined(__ARM_FEATURE_DSP) && defined(__GNUC__)) && !defined(__AVR__)
static int32_t dl_input_sum(const int8_t *x, int32_t inputs) {
  const int8_t *const end = x + inputs;
  int32_t sum = 0;
  while (x != end) sum += *x++;
  return sum;
}
#endif

/* Output o of the layer from its accumulator: requantized, offset and clamped (relu or none). */
static int8_t dl_output(const dl_layer *layer, int32_t o, int32_t acc) {
  int32_t value = dl_requantize(acc, DL_READ_I32((const int32_t *)DL_READ_PTR(&layer->multiplier) + o),
                                DL_READ_I8((const int8_t *)DL_READ_PTR(&layer->shift) + o)) +
                  DL_READ_I32(&layer->output_zero_point);
  if (value < DL_READ_I32(&layer->activation_min)) value = DL_READ_I32(&layer->activation_min);
  if (value > 127) value = 127;
  return (int8_t)value;
}

/* Kept out of line: inlined into denselab_predict, GCC -Os spills the inner loop's pointers. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
#if defined(__AVR__)
/* One row at a time, its weights read in order with LPM Z+ (four accumulators would not stay
 * in registers, and flash is short): row o is row r of its block, or a row on its own. */
static void dl_dense(const dl_layer *layer, const int8_t *input, int8_t *output) {
  const int16_t inputs = (int16_t)DL_READ_I32(&layer->inputs), outputs = (int16_t)DL_READ_I32(&layer->outputs);
  const int16_t grouped = inputs & ~3, rest = inputs & 3, blocks_end = outputs & ~(DL_BLOCK - 1);
  const uint8_t *const weights = (const uint8_t *)DL_READ_PTR(&layer->weights);
  int16_t o, j;
  for (o = 0; o < outputs; ++o) {
    const uint8_t r = o < blocks_end ? (uint8_t)(o & (DL_BLOCK - 1)) : 0, rows = o < blocks_end ? DL_BLOCK : 1;
    const uint8_t *const first = weights + (int16_t)(o - r) * inputs, *const tail = first + rows * grouped + r * rest;
    int32_t acc = dl_dot(DL_READ_I32((const int32_t *)DL_READ_PTR(&layer->bias) + o), input, input + grouped,
                         first + 4 * r, 4 * (rows - 1));
    for (j = 0; j < rest; ++j) acc = dl_multiply_add(acc, input[grouped + j], (int8_t)(dl_rom_i8(tail + j) ^ 0x80));
    output[o] = dl_output(layer, o, acc);
  }
}
#else
static void dl_dense(const dl_layer *layer, const int8_t *input, int8_t *output) {
  const int32_t inputs = DL_READ_I32(&layer->inputs), outputs = DL_READ_I32(&layer->outputs);
  const uint8_t *w = (const uint8_t *)DL_READ_PTR(&layer->weights);
  const int32_t offset = DL_WEIGHT_OFFSET * dl_input_sum(input, inputs);
  int32_t acc[DL_BLOCK], o = 0, k, count;
  /* The layer's fields are read where they are used, once per output: held in registers
   * across the inner loop, they cost the Cortex-M4 spills to the stack. */
  while (o < outputs) {
    count = outputs - o >= DL_BLOCK ? DL_BLOCK : 1;
    for (k = 0; k < count; ++k) acc[k] = DL_READ_I32((const int32_t *)DL_READ_PTR(&layer->bias) + o + k) - offset;
    w = count == DL_BLOCK ? dl_block(input, inputs, w, acc) : dl_row(input, inputs, w, acc);
    for (k = 0; k < count; ++k, ++o) output[o] = dl_output(layer, o, acc[k]);
  }
}
#endif

/* gemmlowp's exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31 in and out. */
static int32_t dl_exp_on_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;  /* exp(-1/8) */
  const int32_t one_third = 715827883;
  const int32_t x = a + ((int32_t)1 << 28);  /* a + 1/8: a Taylor series around -1/8 */
  const int32_t x2 = dl_doubling_high_mul(x, x);
  const int32_t x3 = dl_doubling_high_mul(x2, x);
  const int32_t x4 = dl_doubling_high_mul(x2, x2);
  const int32_t x4_over_4 = dl_divide_by_pot(x4, 2);
  const int32_t tail = dl_divide_by_pot(dl_doubling_high_mul(x4_over_4 + x3, one_third) + x2, 1);
  return constant_term + dl_doubling_high_mul(constant_term, x + tail);
}

/* gemmlowp's exp_on_negative_values: a in Q5.26 (a <= 0), exp(a) in Q0.31. */
DL_OUT_OF_LINE static int32_t dl_exp_on_negative(int32_t a) {
  /* exp(-2^k) for k = -2 .. 4, in Q0.31: one factor per bit of the integer part. */
  static const DL_ROM int32_t factors[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  const int32_t one_quarter = (int32_t)1 << 24;
  const int32_t a_mod_quarter_minus_quarter = (a & (one_quarter - 1)) - one_quarter;
  const int32_t remainder = a_mod_quarter_minus_quarter - a;
  int32_t result = dl_exp_on_quarter(dl_multiply_by_pot(a_mod_quarter_minus_quarter, 5));
  int k;
  for (k = 0; k < 7; ++k) {
    if (remainder & ((int32_t)1 << (24 + k))) result = dl_doubling_high_mul(result, DL_READ_I32(&factors[k]));
  }
  return a == 0 ? INT32_MAX : result;
}

/* gemmlowp's one_over_one_plus_x_for_x_in_0_1: Newton-Raphson in Q2.29, the result in Q0.31. */
static int32_t dl_one_over_one_plus_x(int32_t a) {
  const int64_t sum = (int64_t)a + INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  int32_t x = 1515870810 + dl_doubling_high_mul(half_denominator, -1010580540); /* 48/17 - 32/17 d */
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t one_minus_dx = ((int32_t)1 << 29) - dl_doubling_high_mul(half_denominator, x);
    x = x + dl_multiply_by_pot(dl_doubling_high_mul(x, one_minus_dx), 2);
  }
  return dl_multiply_by_pot(x, 1);
}

static int dl_leading_zeros(uint32_t x) {
  int count = 0;
  while (count < 32 && !(x & 0x80000000u)) {
    x <<= 1;
    ++count;
  }
  return count;
}

/* TFLite's reference int8 Softmax (int8 output: zero point -128, scale 1/256). Each class's
 * exp is computed once and kept, where TFLite computes it twice: the same numbers, half the
 * fixed-point work (DENSELAB_CLASSES int32s of stack). */
static void dl_softmax(const int8_t *input, int8_t *output, int32_t depth) {
  int32_t exps[DENSELAB_CLASSES];
  int32_t c, max = -128, sum = 0; /* sum of exps in Q12.19 */
  int32_t headroom, bits_over_unit, scale;
  for (c = 0; c < depth; ++c) if (input[c] > max) max = input[c];
  for (c = 0; c < depth; ++c) {
    const int32_t diff = input[c] - max;
    exps[c] = 0;
    if (diff >= DL_SOFTMAX_DIFF_MIN) {
      const int32_t scaled = dl_doubling_high_mul(diff * ((int32_t)1 << DL_SOFTMAX_LEFT_SHIFT), DL_SOFTMAX_MULTIPLIER);
      exps[c] = dl_exp_on_negative(scaled);
      sum += dl_divide_by_pot(exps[c], 12);
    }
  }
  /* TFLite's GetReciprocal: 1/sum as a Q0.31 scale and a power of two. */
  headroom = dl_leading_zeros((uint32_t)sum);
  bits_over_unit = 12 - headroom;
  scale = dl_one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - ((uint32_t)1 << 31)));
  for (c = 0; c < depth; ++c) {
    int32_t value = -128;
    if (input[c] - max >= DL_SOFTMAX_DIFF_MIN) {
      value = dl_divide_by_pot(dl_doubling_high_mul(scale, exps[c]), bits_over_unit + 31 - 8) - 128;
      if (value > 127) value = 127;
      if (value < -128) value = -128;
    }
    output[c] = (int8_t)value;
  }
}

/* @denselab-tables@ */

#ifdef DENSELAB_TRACE
/* A hook that denselab's host check compiles in to find where two runtimes part. */
void DENSELAB_TRACE(int layer, const int8_t *values, int32_t count);
#endif

/* Activations between layers: two buffers as wide as the widest hidden layer, used in turn. */
static int8_t dl_activations[2][DL_WIDEST];

void denselab_predict(const int8_t input[DENSELAB_INPUT_SIZE], int8_t output[DENSELAB_CLASSES]) {
  int8_t logits[DENSELAB_CLASSES];
  const int8_t *x = input;
  int layer;
  for (layer = 0; layer < DL_LAYERS; ++layer) {
    int8_t *y = layer == DL_LAYERS - 1 ? logits : dl_activations[layer & 1];
    dl_dense(&dl_layers[layer], x, y);
#ifdef DENSELAB_TRACE
    DENSELAB_TRACE(layer, y, DL_READ_I32(&dl_layers[layer].outputs));
#endif
    x = y;
  }
  dl_softmax(logits, output, DENSELAB_CLASSES);
}

/* Each pixel is read before its own input is written, and no other: `input` may be `pixels`. */
void denselab_quantize(const uint8_t pixels[DENSELAB_INPUT_SIZE], int8_t input[DENSELAB_INPUT_SIZE]) {
  int32_t i;
  for (i = 0; i < DENSELAB_INPUT_SIZE; ++i) input[i] = DL_READ_I8(&dl_pixel_to_input[pixels[i]]);
}

int denselab_classify(const uint8_t pixels[DENSELAB_INPUT_SIZE]) {
  int8_t input[DENSELAB_INPUT_SIZE], output[DENSELAB_CLASSES];
  int i, top = 0;
  denselab_quantize(pixels, input);
  denselab_predict(input, output);
  for (i = 1; i < DENSELAB_CLASSES; ++i) if (output[i] > output[top]) top = i;
  return top;
}

/*
 * The integer arithmetic of TensorFlow Lite's int8 FULLY_CONNECTED and SOFTMAX reference
 * kernels, which TensorFlow Lite Micro runs: the gemmlowp fixed-point helpers, written in
 * C99 from their published definitions, so that every output equals TFLM's bit for bit.
 * Right shifts of negative numbers are arithmetic, as on every compiler TFLM supports.
 * Every constant wider than 16 bits is an int32_t or int64_t, never a plain int, so that the
 * arithmetic is the same where int has 16 bits (AVR).
 */

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

/* The next weight, with LPM's post-increment: *row++ from flash. */
static inline int8_t dl_rom_i8_next(const int8_t **row) {
  uint8_t value;
  __asm__ __volatile__("lpm %0, Z+" : "=r"(value), "+z"(*row));
  return (int8_t)value;
}

/* acc + x * w: one MULS (whose C flag is the product's sign) and a sign-extending add, eight
 * cycles. Written in C, avr-gcc makes the product a call to its 16 x 16 -> 32-bit
 * multiplication, and that call took most of an inference. */
static inline int32_t dl_multiply_add_i8(int32_t acc, int8_t x, int8_t w) {
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

/* acc plus the dot product of x[0 .. end) and the weights at *row, which it advances: LD X+,
 * LPM Z+ and dl_multiply_add_i8, about 20 cycles per input with the loop as avr-gcc 5.4 -Os
 * makes it. A function of its own, so that acc stays in registers: inside dl_dense avr-gcc
 * spills it to the stack on every step. */
__attribute__((noinline))
static int32_t dl_dot(int32_t acc, const int8_t *x, const int8_t *end, const int8_t **row) {
  const int8_t *w = *row;
  while (x != end) acc = dl_multiply_add_i8(acc, *x++, dl_rom_i8_next(&w));
  *row = w;
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
  const int8_t *weights;     /* [outputs][inputs], row-major: the converter's int8 weights */
  const int32_t *bias;       /* the int32 bias minus input_zero_point * sum(weights[o]) */
  const int32_t *multiplier; /* per output: real scale = multiplier * 2^(shift - 31) */
  const int8_t *shift;
  int32_t inputs, outputs;
  int32_t output_zero_point, activation_min; /* activation_max is 127 */
} dl_layer;

/* gemmlowp's SaturatingRoundingDoublingHighMul: the high 32 bits of 2ab, rounded. */
static int32_t dl_doubling_high_mul(int32_t a, int32_t b) {
  int64_t ab, nudge;
  if (a == b && a == INT32_MIN) return INT32_MAX;
  ab = (int64_t)a * (int64_t)b;
  nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp's RoundingDivideByPOT: x / 2^exponent, rounded half away from zero. */
static int32_t dl_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent: x * 2^exponent, saturated. */
static int32_t dl_multiply_by_pot(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
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

/* Kept out of line: inlined into denselab_predict, GCC -Os spills the inner loop's pointers. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void dl_dense(const dl_layer *layer, const int8_t *input, int8_t *output) {
  const int32_t inputs = DL_READ_I32(&layer->inputs);
  const int8_t *const end = input + inputs;
  const int8_t *const unrolled = input + (inputs & 3); /* the rest is a multiple of four */
  const int8_t *row = (const int8_t *)DL_READ_PTR(&layer->weights);
  int32_t o;
  /* The layer's fields are read where they are used, once per output: held in registers
   * across the inner loop, they cost the Cortex-M4 spills to the stack. */
  for (o = 0; o < DL_READ_I32(&layer->outputs); ++o) {
    const int8_t *x = input;
    int32_t acc = DL_READ_I32((const int32_t *)DL_READ_PTR(&layer->bias) + o);
#if defined(__AVR__)
    (void)unrolled; /* unrolled, dl_dot would save only its loop's test */
    acc = dl_dot(acc, x, end, &row);
#else
    /* Pointers, not indices, four inputs per step and the test at the bottom: four
     * instructions per multiply-add on a Cortex-M4 at -Os, against seven for the plain loop. */
    while (x != unrolled) acc += (int32_t)*x++ * (int32_t)*row++;
    if (x != end) {
      do {
        acc += (int32_t)x[0] * (int32_t)row[0];
        acc += (int32_t)x[1] * (int32_t)row[1];
        acc += (int32_t)x[2] * (int32_t)row[2];
        acc += (int32_t)x[3] * (int32_t)row[3];
        x += 4;
        row += 4;
      } while (x != end);
    }
#endif
    acc = dl_requantize(acc, DL_READ_I32((const int32_t *)DL_READ_PTR(&layer->multiplier) + o),
                        DL_READ_I8((const int8_t *)DL_READ_PTR(&layer->shift) + o)) +
          DL_READ_I32(&layer->output_zero_point);
    if (acc < DL_READ_I32(&layer->activation_min)) acc = DL_READ_I32(&layer->activation_min);
    if (acc > 127) acc = 127;
    output[o] = (int8_t)acc;
  }
}

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
static int32_t dl_exp_on_negative(int32_t a) {
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

/* TFLite's reference int8 Softmax (int8 output: zero point -128, scale 1/256). */
static void dl_softmax(const int8_t *input, int8_t *output, int32_t depth) {
  int32_t c, max = -128, sum = 0; /* sum of exps in Q12.19 */
  int32_t headroom, bits_over_unit, scale;
  for (c = 0; c < depth; ++c) if (input[c] > max) max = input[c];
  for (c = 0; c < depth; ++c) {
    const int32_t diff = input[c] - max;
    if (diff >= DL_SOFTMAX_DIFF_MIN) {
      const int32_t scaled = dl_doubling_high_mul(diff * ((int32_t)1 << DL_SOFTMAX_LEFT_SHIFT), DL_SOFTMAX_MULTIPLIER);
      sum += dl_divide_by_pot(dl_exp_on_negative(scaled), 12);
    }
  }
  /* TFLite's GetReciprocal: 1/sum as a Q0.31 scale and a power of two. */
  headroom = dl_leading_zeros((uint32_t)sum);
  bits_over_unit = 12 - headroom;
  scale = dl_one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - ((uint32_t)1 << 31)));
  for (c = 0; c < depth; ++c) {
    const int32_t diff = input[c] - max;
    int32_t value = -128;
    if (diff >= DL_SOFTMAX_DIFF_MIN) {
      const int32_t scaled = dl_doubling_high_mul(diff * ((int32_t)1 << DL_SOFTMAX_LEFT_SHIFT), DL_SOFTMAX_MULTIPLIER);
      const int32_t exp = dl_exp_on_negative(scaled);
      value = dl_divide_by_pot(dl_doubling_high_mul(scale, exp), bits_over_unit + 31 - 8) - 128;
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

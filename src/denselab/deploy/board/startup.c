/*
 * denselab's start-up code for QEMU's Cortex-M boards (microbit, mps2-an386, mps2-an500),
 * under every firmware it runs there: the vector table, and a reset handler that sets up C
 * and C++ (TFLM has static constructors) and runs main() with printf and exit over
 * semihosting. A real board brings its own start-up code (the Arduino core, the vendor's SDK).
 */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _stack_top;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);

void dl_reset(void);
void dl_fault(void);

/* A fault ends the emulator with status 99 instead of hanging it. */
void dl_fault(void) { exit(99); }

__attribute__((section(".vectors"), used)) void (*const dl_vectors[16])(void) = {
    (void (*)(void))(&_stack_top), dl_reset, dl_fault, dl_fault, dl_fault, dl_fault, dl_fault,
    0, 0, 0, 0, dl_fault, dl_fault, 0, dl_fault, dl_fault,
};

void dl_reset(void) {
  uint32_t *from = &_sidata, *to = &_sdata;
  while (to < &_edata) *to++ = *from++;
  for (to = &_sbss; to < &_ebss;) *to++ = 0;
#if defined(__ARM_FP)
  /* Full access to the FPU (CP10 and CP11), as the hard-float ABI needs; a Cortex-M0+ has none. */
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
  __asm volatile("dsb\n\tisb");
#endif
  initialise_monitor_handles();
  __libc_init_array(); /* C++ static constructors, through .init_array */
  exit(main());
}

/* __libc_init_array and exit() call these; the linker script keeps .init_array instead. */
void _init(void) {}
void _fini(void) {}

/*
 * The hooks that main.cc calls around each Invoke() when they are linked in: here they count
 * instructions with SysTick and measure the stack that Invoke() used, and print both over
 * semihosting, one line per Invoke(). Under `-icount shift=0` QEMU runs one instruction per
 * nanosecond of virtual time, so SysTick ticks count instructions (denselab.deploy.qemu gives
 * each machine's instructions per tick).
 */
#include <stdint.h>
#include <stdio.h>

#define DL_PAINT 0xA5A5A5A5u
#ifndef DL_PAINTED
#define DL_PAINTED 65536u /* bytes of free stack painted below the caller's frame (per machine: -D) */
#endif
#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)

static uint32_t dl_sp, dl_start;

void denselab_before_invoke(void) {
  volatile uint32_t *word;
  /* Paint the free stack below this frame; what Invoke() overwrites, it used. */
  __asm volatile("mov %0, sp" : "=r"(dl_sp));
  for (word = (volatile uint32_t *)(dl_sp - DL_PAINTED); word < (volatile uint32_t *)dl_sp; ++word) *word = DL_PAINT;
  SYST_RVR = 0xFFFFFFu; /* SysTick on the core clock, counting down, no interrupt */
  SYST_CVR = 0;
  SYST_CSR = 5;
  dl_start = SYST_CVR;
}

void denselab_after_invoke(void) {
  const uint32_t end = SYST_CVR;
  volatile uint32_t *word = (volatile uint32_t *)(dl_sp - DL_PAINTED);
  while (word < (volatile uint32_t *)dl_sp && *word == DL_PAINT) ++word;
  printf("invoke ticks %lu stack %lu%s\n", (unsigned long)((dl_start - end) & 0xFFFFFFu),
         (unsigned long)(dl_sp - (uint32_t)word), word == (volatile uint32_t *)(dl_sp - DL_PAINTED) ? " overflowed" : "");
}

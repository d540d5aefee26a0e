// Early boot: from whatever exception level QEMU enters at to EL1 with the MMU on, running at the
// kernel's high virtual addresses, then into `kernel_entry(dtb_pa, entry_el)`.
//
// QEMU loads the raw Image at RAM base + text_offset (0x4008_0000 on `virt`) with the MMU off and
// the DTB's physical address in x0. Until the MMU is on, every address must be computed
// PC-relatively (adr/adrp): the image is linked at KERNEL_VIRT_OFFSET + physical address.
//
// Register use until kernel_entry: x19 = DTB physical address, x20 = exception level at entry.

.macro adr_l, dst, sym
    adrp    \dst, \sym
    add     \dst, \dst, :lo12:\sym
.endm

// SCR_EL3: EL1 is AArch64 (RW), secure (NS = 0), bits 5:4 RES1.
.equ SCR_EL3_SECURE_EL1,  (1 << 10) | (3 << 4)
// HCR_EL2.RW: EL1 runs AArch64. Nothing else is virtualised or trapped.
.equ HCR_EL2_RW,          (1 << 31)
// CPTR_EL2 with its RES1 bits and TFP = 0: FP/SIMD not trapped.
.equ CPTR_EL2_NO_TRAPS,   0x33ff
// SPSR for the eret to EL1h with D, A, I, F masked.
.equ SPSR_EL1H_MASKED,    0x3c5
// ICC_SRE_ELx: SRE (system register interface) | DFB | DIB | Enable (lower EL may use it).
.equ ICC_SRE_EL3_VALUE,   0xf
.equ ICC_SRE_EL2_VALUE,   0x9

// SCTLR_EL1: RES1 bits of ARMv8.0 (29, 28, 23, 22, 20, 11), EL0 WFI/WFE not trapped (16, 18),
// EL0 may read CTR_EL0 (15), stack alignment checks (SA, SA0). MMU and caches still off.
.equ SCTLR_EL1_MMU_OFF,   0x30d00800 | (1 << 18) | (1 << 16) | (1 << 15) | (1 << 4) | (1 << 3)
.equ SCTLR_EL1_M,         (1 << 0)
.equ SCTLR_EL1_C,         (1 << 2)
.equ SCTLR_EL1_I,         (1 << 12)

// MAIR_EL1: see `boot::MAIR_EL1` (the kernel's page tables use the same attribute indices).
.equ MAIR_EL1_VALUE,      {mair}

// TCR_EL1: T0SZ = T1SZ = 16 (48-bit VA both halves), 4 KiB granules (TG0 = 0, TG1 = 2),
// inner/outer write-back write-allocate walks, inner shareable. IPS and AS are filled in below.
.equ TCR_EL1_BASE,        (16 << 0) | (1 << 8) | (1 << 10) | (3 << 12) | (0 << 14) | (16 << 16) | (1 << 24) | (1 << 26) | (3 << 28) | (2 << 30)
.equ TCR_EL1_AS,          (1 << 36)

// Level-1 block descriptors (1 GiB) for the boot tables.
// Normal memory: valid block, AttrIndx 1, inner shareable, AF, UXN. EL1 may write and execute:
// the kernel replaces these tables with W^X-correct ones before anything else runs.
.equ BLOCK_NORMAL,        (1 << 54) | (1 << 10) | (3 << 8) | (1 << 2) | 1
// Device memory: valid block, AttrIndx 0, AF, PXN, UXN.
.equ BLOCK_DEVICE,        (1 << 54) | (1 << 53) | (1 << 10) | 1
.equ TABLE_DESCRIPTOR,    3

.section .text.head, "ax"
.global _head
_head:
    // arm64 Linux Image header (Documentation/arch/arm64/booting.rst): QEMU only passes the DTB
    // in x0 to images that carry it.
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   0x80000                 // text_offset: load at RAM base + 512 KiB
    .quad   __image_size            // image_size, bss included
    .quad   (1 << 1)                // flags: little-endian, 4 KiB pages, 2 MiB-aligned base near RAM start
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5 (no PE header)

.section .text.boot, "ax"
primary_entry:
    mov     x19, x0

    // Only the boot CPU continues; any other core that gets here (spin-table firmware) parks.
    // With PSCI (QEMU virt) secondaries stay off until the kernel starts them.
    mrs     x0, mpidr_el1
    ldr     x1, =0xff00ffffff       // Aff3..Aff0
    and     x0, x0, x1
    cbnz    x0, park

    mrs     x20, CurrentEL
    lsr     x20, x20, #2
    msr     tpidr_el1, xzr          // CPU index 0 (kernel::arch::cpu::cpu_index)
    cmp     x20, #3
    b.eq    from_el3
    cmp     x20, #2
    b.ne    in_el1
    adr     x28, in_el1
    b       el2_to_el1

from_el3:
    // Entered at EL3 (no firmware): continue in Secure EL1. With nothing at EL3 to hand
    // interrupts to the normal world, the kernel keeps the secure view of the GIC, where it can
    // configure interrupt groups itself. EL2 does not exist in the secure state, so go straight
    // to EL1.
    mov     x2, #SCR_EL3_SECURE_EL1
    msr     scr_el3, x2
    msr     cptr_el3, xzr           // FP/SIMD not trapped to EL3
    mrs     x0, id_aa64pfr0_el1
    ubfx    x2, x0, #24, #4         // GICv3 system registers implemented?
    cbz     x2, 1f
    mrs     x3, S3_6_C12_C12_5      // ICC_SRE_EL3
    orr     x3, x3, #ICC_SRE_EL3_VALUE
    msr     S3_6_C12_C12_5, x3
    isb
1:  mov     x3, #SPSR_EL1H_MASKED
    msr     spsr_el3, x3
    adr     x4, in_el1
    msr     elr_el3, x4
    eret

// Configures EL2 so that EL1 runs AArch64 without traps, then continues at EL1 at x28.
el2_to_el1:
    mov     x0, #HCR_EL2_RW
    msr     hcr_el2, x0
    mrs     x0, cnthctl_el2
    orr     x0, x0, #3              // EL1PCTEN | EL1PCEN: EL1 may use the physical counter/timer
    msr     cnthctl_el2, x0
    msr     cntvoff_el2, xzr
    mov     x0, #CPTR_EL2_NO_TRAPS
    msr     cptr_el2, x0
    msr     hstr_el2, xzr
    mrs     x0, midr_el1
    msr     vpidr_el2, x0
    mrs     x0, mpidr_el1
    msr     vmpidr_el2, x0
    msr     vttbr_el2, xzr
    mrs     x0, id_aa64pfr0_el1
    ubfx    x0, x0, #24, #4
    cbz     x0, 1f
    mrs     x0, S3_4_C12_C9_5       // ICC_SRE_EL2
    mov     x1, #ICC_SRE_EL2_VALUE
    orr     x0, x0, x1
    msr     S3_4_C12_C9_5, x0
    isb
1:  mov     x0, #SPSR_EL1H_MASKED
    msr     spsr_el2, x0
    msr     elr_el2, x28
    eret

in_el1:
    mov     x0, #(3 << 20)          // CPACR_EL1.FPEN: Rust code uses FP/SIMD registers
    msr     cpacr_el1, x0
    ldr     x0, =SCTLR_EL1_MMU_OFF
    msr     sctlr_el1, x0
    isb
    adr_l   x0, early_vectors
    msr     vbar_el1, x0
    isb

    // Zero .bss (and with it the boot page tables and stack).
    adr_l   x0, __bss_start
    adr_l   x1, __bss_end
1:  cmp     x0, x1
    b.hs    2f
    stp     xzr, xzr, [x0], #16
    b       1b
2:
    // Boot page tables: one L0 + one L1 table per half, 1 GiB blocks.
    //   TTBR0 (identity): the GiB holding the image, for the instructions right after SCTLR.M = 1.
    //   TTBR1 (VA = KERNEL_VIRT_OFFSET + PA): GiB 0 as device memory (early console), the GiB
    //   holding the image and the GiB holding the DTB as normal memory.
    adr_l   x0, boot_l0_ttbr0
    adr_l   x1, boot_l1_ttbr0
    adr_l   x2, boot_l0_ttbr1
    adr_l   x3, boot_l1_ttbr1
    orr     x4, x1, #TABLE_DESCRIPTOR
    str     x4, [x0]
    orr     x4, x3, #TABLE_DESCRIPTOR
    str     x4, [x2]

    ldr     x6, =BLOCK_NORMAL
    ldr     x4, =BLOCK_DEVICE
    str     x4, [x3]                // GiB 0: device

    adr     x5, _head
    lsr     x5, x5, #30             // GiB index of the image
    lsl     x7, x5, #30
    orr     x7, x7, x6
    str     x7, [x1, x5, lsl #3]
    str     x7, [x3, x5, lsl #3]

    lsr     x8, x19, #30            // GiB index of the DTB: mapped if in 1..511
    cbz     x8, 3f
    cmp     x8, #512
    b.hs    3f
    lsl     x9, x8, #30
    orr     x9, x9, x6
    str     x9, [x3, x8, lsl #3]
3:
    // The tables were written with the MMU and caches off: drop any stale cache lines over them
    // so the (cacheable) table walks see what was written.
    adr_l   x0, boot_l0_ttbr0
    add     x1, x0, #(4 * 4096)
    mrs     x2, ctr_el0
    ubfx    x2, x2, #16, #4         // DminLine: log2(words) of the smallest D-cache line
    mov     x3, #4
    lsl     x2, x3, x2
4:  dc      ivac, x0
    add     x0, x0, x2
    cmp     x0, x1
    b.lo    4b
    dsb     sy

    ldr     x0, =MAIR_EL1_VALUE
    msr     mair_el1, x0
    ldr     x0, =TCR_EL1_BASE
    mrs     x1, id_aa64mmfr0_el1
    and     x2, x1, #0xf            // PARange, capped at 48 bits (0b101)
    mov     x3, #5
    cmp     x2, x3
    csel    x2, x2, x3, lo
    bfi     x0, x2, #32, #3         // IPS
    ubfx    x2, x1, #4, #4          // ASIDBits: 0b0010 = 16-bit ASIDs
    cmp     x2, #2
    b.ne    5f
    orr     x0, x0, #TCR_EL1_AS
5:  msr     tcr_el1, x0
    adr_l   x0, boot_l0_ttbr0
    msr     ttbr0_el1, x0
    adr_l   x0, boot_l0_ttbr1
    msr     ttbr1_el1, x0
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    mrs     x0, sctlr_el1
    orr     x0, x0, #SCTLR_EL1_M
    orr     x0, x0, #SCTLR_EL1_C
    orr     x0, x0, #SCTLR_EL1_I
    msr     sctlr_el1, x0
    isb

    ldr     x0, =high_entry         // absolute: the linked (high) address
    br      x0

high_entry:
    ldr     x0, =__boot_stack_top
    mov     sp, x0
    ldr     x0, =early_vectors
    msr     vbar_el1, x0
    isb
    mov     x29, xzr                // end of the frame-pointer chain
    mov     x30, xzr
    mov     x0, x19
    mov     x1, x20
    bl      kernel_entry
    b       park

park:
    wfe
    b       park

// Entry of a secondary CPU started with PSCI CPU_ON (at its physical address, MMU off), with
// x0 = physical address of its SecondaryStart block (kernel::smp), laid out as:
//   0 MAIR, 8 TCR, 16 TTBR0 (boot identity map), 24 TTBR1 (kernel tables), 32 SCTLR (MMU on),
//   40 stack top, 48 CPU index, 56 entry point (kernel virtual address, called with x0 = index).
.global secondary_entry
secondary_entry:
    mov     x19, x0
    mrs     x0, CurrentEL
    lsr     x0, x0, #2
    cmp     x0, #2
    b.ne    secondary_el1
    adr     x28, secondary_el1
    b       el2_to_el1

secondary_el1:
    mov     x0, #(3 << 20)          // CPACR_EL1.FPEN
    msr     cpacr_el1, x0
    ldr     x0, =SCTLR_EL1_MMU_OFF
    msr     sctlr_el1, x0
    isb
    adr_l   x0, early_vectors
    msr     vbar_el1, x0
    ldp     x1, x2, [x19, #0]
    ldp     x3, x4, [x19, #16]
    ldp     x5, x6, [x19, #32]
    ldp     x7, x8, [x19, #48]
    msr     mair_el1, x1
    msr     tcr_el1, x2
    msr     ttbr0_el1, x3
    msr     ttbr1_el1, x4
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     sctlr_el1, x5
    isb
    msr     tpidr_el1, x7
    mov     sp, x6
    mov     x29, xzr
    mov     x30, xzr
    mov     x0, x7
    br      x8

// Until the kernel installs its own vectors, any exception stops the CPU here (x30 of the
// handler is not touched, so a debugger shows where it came from via ELR_EL1).
.balign 2048
early_vectors:
.rept 16
    .balign 128
    b       park
.endr

.ltorg

.section .bss.boot_tables, "aw", %nobits
.balign 4096
.global boot_l0_ttbr0
boot_l0_ttbr0: .space 4096
boot_l1_ttbr0: .space 4096
boot_l0_ttbr1: .space 4096
boot_l1_ttbr1: .space 4096

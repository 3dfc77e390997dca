#ifndef CKAIROS_KERNELS_H
#define CKAIROS_KERNELS_H
/* Placeholder: the SIMD kernels land here. */
int ckairos_kernels_placeholder(void);
#endif

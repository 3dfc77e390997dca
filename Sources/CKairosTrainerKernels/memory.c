/* Returning freed heap memory to the system between training phases (see Trainer.releaseFreedMemory). */
#include "ckairos_trainer_kernels.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void ckt_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

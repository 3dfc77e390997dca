/* Returning freed heap memory to the system between training phases (see Trainer.releaseFreedMemory), and what a
 * path is (Trainer.checkWritable). */
#include "ckairos_trainer_kernels.h"
#include <sys/stat.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void ckt_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

int ckt_path_kind(const char *path, int64_t *size) {
    struct stat st;
    if (stat(path, &st) != 0) return CKT_PATH_NONE;
    if (size) *size = (int64_t)st.st_size;
    if (S_ISREG(st.st_mode)) return CKT_PATH_FILE;
    if (S_ISDIR(st.st_mode)) return CKT_PATH_DIR;
    return CKT_PATH_OTHER;
}

/* Rank processes and the memory they share, for gs.dist (lua/gradspec/dist.lua).
 *
 * gs_shm_create maps one anonymous MAP_SHARED region before the ranks are
 * forked, so every rank (and the parent) sees the same bytes: a
 * process-shared barrier, one descriptor per rank (which collective it is
 * in, with what dtype and shape: checked by every rank before any data
 * moves, and read by the parent to say where a hung rank was waiting) and
 * one data slot per rank. The collectives move data through the slots in
 * chunks of at most slot_bytes, so a tensor of any size fits. Reductions
 * combine the ranks in rank order: every rank gets the same bits, run
 * after run. */
#ifndef GS_DIST_SHM_H
#define GS_DIST_SHM_H

#include "gs_types.h"

typedef struct gs_shm gs_shm;

/* What a rank is doing, as its descriptor says. */
typedef enum {
  GS_COLL_NONE = 0,       /* running its own code */
  GS_COLL_ALL_REDUCE = 1,
  GS_COLL_ALL_GATHER = 2,
  GS_COLL_BROADCAST = 3,
  GS_COLL_BARRIER = 4,
  GS_COLL_DONE = 5        /* its function returned */
} gs_coll_op;

typedef struct {
  int32_t op;             /* gs_coll_op */
  int32_t dtype;          /* gs_dtype of the tensor */
  int64_t rows, cols;     /* its shape (rows 1 for 1-D, both 1 for 0-D) */
  int32_t dims;
  int32_t arg;            /* all_reduce: 0 sum, 1 max; broadcast: the root */
  int64_t calls;          /* collectives this rank has entered */
} gs_coll_desc;

/* NULL on failure, with errno's text in err->msg. */
gs_shm *gs_shm_create(int ranks, size_t slot_bytes, gs_error *err);
void gs_shm_destroy(gs_shm *s);
gs_coll_desc *gs_shm_desc(gs_shm *s, int rank);
/* 256 bytes every rank can read and write (rank 0 hands NCCL's id over here). */
void *gs_shm_scratch(gs_shm *s);
/* Waits until every rank has arrived. */
void gs_shm_barrier(gs_shm *s);

/* The data phases; every rank calls the same one with the same sizes (the
 * descriptors were compared first). buf is host memory. all_reduce works in
 * place on count elements of dtype (reduce 0 sum, 1 max; max propagates
 * NaN); all_gather copies bytes from src into dst + rank * bytes of every
 * rank's dst; broadcast copies root's bytes into everyone's buf. */
gs_status gs_shm_all_reduce(gs_shm *s, int rank, void *buf, int64_t count, gs_dtype dtype, int reduce,
                            gs_error *err);
void gs_shm_all_gather(gs_shm *s, int rank, const void *src, void *dst, size_t bytes);
void gs_shm_broadcast(gs_shm *s, int rank, void *buf, size_t bytes, int root);

/* Processes. gs_dist_fork flushes stdio and forks; the child (0 returned)
 * is killed when its parent dies. gs_dist_poll: 0 while pid runs, 1 once
 * reaped with *code its exit status or -1 and *term_signal the signal;
 * -1 when pid is no child of ours. gs_dist_exit ends a rank at once,
 * without running the parent's exit handlers a second time. */
int gs_dist_fork(void);
int gs_dist_poll(int pid, int *code, int *term_signal);
void gs_dist_kill(int pid);
void gs_dist_exit(int code);
int gs_dist_getpid(void);

#endif

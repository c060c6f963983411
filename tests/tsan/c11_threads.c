/*
 * c11_threads.c - C11 <threads.h> on top of pthreads, compiled into every
 * program that links librdkafka, in ThreadSanitizer builds only
 * (-DMOVIE_TSAN=ON; see CMakeLists.txt).
 *
 * Why: librdkafka creates its threads and locks its mutexes with C11
 * thrd_create/mtx_lock/cnd_wait. glibc implements those by calling its
 * internal pthread functions directly, past TSan's interceptors, and the
 * TSan runtime of gcc 12 / clang 14 has no C11 interceptors (LLVM 15 added
 * them). So TSan never sets up rdkafka's threads (it crashes in them: SEGV
 * at 0xc38 under test_ingest) and never sees their synchronisation. The
 * program's own definitions interpose glibc's for librdkafka (an executable's
 * symbols come first in the lookup scope) and go through the intercepted
 * pthread functions. glibc's mtx_t / cnd_t / once_flag are its pthread types
 * under another name, which is what glibc's own implementation relies on.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>
#include <time.h>

#define SHIM __attribute__((visibility("default")))

int thrd_create(thrd_t *thr, thrd_start_t func, void *arg);
int thrd_join(thrd_t thr, int *res);
int mtx_init(mtx_t *mtx, int type);
int mtx_lock(mtx_t *mtx);
int mtx_trylock(mtx_t *mtx);
int mtx_timedlock(mtx_t *restrict mtx, const struct timespec *restrict ts);
int mtx_unlock(mtx_t *mtx);
void mtx_destroy(mtx_t *mtx);
int cnd_init(cnd_t *cond);
int cnd_signal(cnd_t *cond);
int cnd_broadcast(cnd_t *cond);
int cnd_wait(cnd_t *cond, mtx_t *mtx);
int cnd_timedwait(cnd_t *restrict cond, mtx_t *restrict mtx, const struct timespec *restrict ts);
void cnd_destroy(cnd_t *cond);
void call_once(once_flag *flag, void (*func)(void));

static int result(int err)
{
	switch (err) {
	case 0: return thrd_success;
	case ETIMEDOUT: return thrd_timedout;
	case EBUSY: return thrd_busy;
	case ENOMEM:
	case EAGAIN: return thrd_nomem;
	default: return thrd_error;
	}
}

struct start {
	thrd_start_t func;
	void *arg;
};

static void *trampoline(void *p)
{
	struct start s = *(struct start *)p;
	free(p);
	return (void *)(intptr_t)s.func(s.arg);
}

SHIM int thrd_create(thrd_t *thr, thrd_start_t func, void *arg)
{
	struct start *s = malloc(sizeof(*s));
	if (!s)
		return thrd_nomem;
	s->func = func;
	s->arg = arg;
	pthread_t t;
	int err = pthread_create(&t, NULL, trampoline, s);
	if (err) {
		free(s);
		return result(err);
	}
	*thr = (thrd_t)t;
	return thrd_success;
}

SHIM int thrd_join(thrd_t thr, int *res)
{
	void *value = NULL;
	int err = pthread_join((pthread_t)thr, &value);
	if (err == 0 && res)
		*res = (int)(intptr_t)value;
	return result(err);
}

#define MTX(m) ((pthread_mutex_t *)(void *)(m))
#define CND(c) ((pthread_cond_t *)(void *)(c))

SHIM int mtx_init(mtx_t *mtx, int type)
{
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	if (type & mtx_recursive)
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	int err = pthread_mutex_init(MTX(mtx), &attr);
	pthread_mutexattr_destroy(&attr);
	return result(err);
}

SHIM int mtx_lock(mtx_t *mtx)
{
	return result(pthread_mutex_lock(MTX(mtx)));
}

SHIM int mtx_trylock(mtx_t *mtx)
{
	return result(pthread_mutex_trylock(MTX(mtx)));
}

SHIM int mtx_timedlock(mtx_t *restrict mtx, const struct timespec *restrict ts)
{
	return result(pthread_mutex_timedlock(MTX(mtx), ts));
}

SHIM int mtx_unlock(mtx_t *mtx)
{
	return result(pthread_mutex_unlock(MTX(mtx)));
}

SHIM void mtx_destroy(mtx_t *mtx)
{
	pthread_mutex_destroy(MTX(mtx));
}

SHIM int cnd_init(cnd_t *cond)
{
	return result(pthread_cond_init(CND(cond), NULL));
}

SHIM int cnd_signal(cnd_t *cond)
{
	return result(pthread_cond_signal(CND(cond)));
}

SHIM int cnd_broadcast(cnd_t *cond)
{
	return result(pthread_cond_broadcast(CND(cond)));
}

SHIM int cnd_wait(cnd_t *cond, mtx_t *mtx)
{
	return result(pthread_cond_wait(CND(cond), MTX(mtx)));
}

SHIM int cnd_timedwait(cnd_t *restrict cond, mtx_t *restrict mtx,
                       const struct timespec *restrict ts)
{
	return result(pthread_cond_timedwait(CND(cond), MTX(mtx), ts));
}

SHIM void cnd_destroy(cnd_t *cond)
{
	pthread_cond_destroy(CND(cond));
}

SHIM void call_once(once_flag *flag, void (*func)(void))
{
	pthread_once((pthread_once_t *)(void *)flag, func);
}

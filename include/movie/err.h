/*
 * err.h - the one error-code enum of the movie runtime.
 *
 * Every function of the runtime that can fail returns 0 on success or one of
 * these negative codes; each function's header comment lists the codes it can
 * return. Codes are stable: they are logged and tested by value.
 */
#ifndef MOVIE_ERR_H
#define MOVIE_ERR_H

enum mv_err {
	MV_OK = 0,
	MV_ENOMEM = -1,     /* allocation failed */
	MV_EINVAL = -2,     /* invalid argument or malformed input */
	MV_ENOTFOUND = -3,  /* no such record / key */
	MV_EUNAVAIL = -4,   /* dependency (database, peer, broker) unreachable */
	MV_ETIMEDOUT = -5,  /* deadline expired */
	MV_ETOOBIG = -6,    /* input larger than its configured cap */
	MV_EIO = -7,        /* file or socket I/O failed (errno logged by the caller) */
	MV_ESYNTAX = -8,    /* syntax error in a config or a message */
	MV_ERANGE = -9,     /* value outside its allowed range */
	MV_EPROTO = -10,    /* peer violated a protocol */
	MV_ECLOSED = -11,   /* object already closed or shutting down */
	MV_EAGAIN = -12,    /* try again later (need more input, queue full) */
	MV_EEXIST = -13,    /* already exists */
	MV_EINTERNAL = -14, /* broken invariant; a bug */
};

/* Return a static, human-readable name for an mv_err code ("not found"). */
const char *mv_strerror(int code);

#endif

#include "movie/err.h"

#include "movie/banned.h"

const char *mv_strerror(int code)
{
	switch (code) {
	case MV_OK: return "ok";
	case MV_ENOMEM: return "out of memory";
	case MV_EINVAL: return "invalid argument";
	case MV_ENOTFOUND: return "not found";
	case MV_EUNAVAIL: return "unavailable";
	case MV_ETIMEDOUT: return "deadline exceeded";
	case MV_ETOOBIG: return "too big";
	case MV_EIO: return "i/o error";
	case MV_ESYNTAX: return "syntax error";
	case MV_ERANGE: return "out of range";
	case MV_EPROTO: return "protocol error";
	case MV_ECLOSED: return "closed";
	case MV_EAGAIN: return "try again";
	case MV_EEXIST: return "already exists";
	case MV_EINTERNAL: return "internal error";
	default: return "unknown error";
	}
}

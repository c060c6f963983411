/*
 * service_job.h - one request of a store-backed handler, from the loop to the
 * store and back.
 *
 * A handler validates the request on its loop, fills a job (a struct that
 * embeds struct service_job as its FIRST member) and starts it: the store
 * call (ops->work) runs inline when the store never blocks, else on the
 * thread pool (service_dispatch); the answer (ops->finish_grpc for a gRPC
 * call, ops->finish_http for an HTTP exchange) and ops->free then run back on
 * the loop. A store that is unreachable (rc MV_EUNAVAIL) is reported to the
 * server's readiness (server_report_unavailable) before the answer.
 */
#ifndef MOVIE_SERVICE_JOB_H
#define MOVIE_SERVICE_JOB_H

#include <stdbool.h>

#include "movie/grpc.h"
#include "movie/server.h"

struct service_job;

struct service_job_ops {
	void (*work)(struct service_job *job);        /* the store call; sets job->rc */
	void (*finish_grpc)(struct service_job *job); /* answers job->call */
	void (*finish_http)(struct service_job *job); /* answers job->ex */
	void (*free)(struct service_job *job);        /* releases the whole job */
};

struct service_job {
	const struct service_job_ops *ops;
	struct server *srv;     /* for readiness reports */
	struct grpc_call *call; /* exactly one of call and ex is set */
	struct http_exchange *ex;
	int rc; /* the store's result: 0 or an MV_E* code */
};

/* Run `job` (ops, srv and call or ex set): work, then finish and free. When
 * the work cannot be queued, job->rc becomes MV_EUNAVAIL and the job is
 * answered and freed at once. `blocking`: the store's calls may block (run
 * them off the loop). Only from a handler, on its loop thread. The job is
 * owned by this call from here on. */
void service_job_start(struct service_job *job, bool blocking);

#endif

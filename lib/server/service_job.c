/*
 * service_job.c - a store-backed request's life (movie/service_job.h).
 */
#include "movie/service_job.h"

#include "movie/err.h"
#include "movie/service.h"
#include "movie/banned.h"

static void job_work(void *arg)
{
	struct service_job *job = arg;
	job->ops->work(job);
}

static void job_done(void *arg)
{
	struct service_job *job = arg;
	if (job->rc == MV_EUNAVAIL)
		server_report_unavailable(job->srv);
	if (job->call)
		job->ops->finish_grpc(job);
	else
		job->ops->finish_http(job);
	job->ops->free(job);
}

void service_job_start(struct service_job *job, bool blocking)
{
	if (service_dispatch(blocking, job_work, job_done, job) != 0) {
		job->rc = MV_EUNAVAIL;
		job_done(job);
	}
}

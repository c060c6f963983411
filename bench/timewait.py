#!/usr/bin/python3
"""Sockets left in TIME-WAIT by 20,000 GetMovieDetails calls (issue 4: the reference
dials twice per request). Starts the three services, counts TIME-WAIT sockets to the
peers before and after the load, and the established movie->metadata connections."""
import sys, subprocess, signal
import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.argv = ["x"]
import grpc_bench as gb, grpc
ports = {p: gb.harness.free_port() for p in ("metadata", "rating", "movie")}
env = {"MOVIE_PEERS_METADATA_ADDRESSES": "127.0.0.1:%d" % ports["metadata"],
       "MOVIE_PEERS_RATING_ADDRESSES": "127.0.0.1:%d" % ports["rating"],
       "METADATA_STORAGE_DRIVER": "memory", "RATING_STORAGE_DRIVER": "memory"}
svcs = {p: gb.start(p, ports[p], env) for p in ("metadata", "rating", "movie")}
ch = grpc.insecure_channel(svcs["metadata"].target)
gb.S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(gb.pb.PutMetadataRequest(metadata=gb.pb.Metadata(id="1", title="T")), timeout=5)
ch.close()
def tw():
    out = subprocess.run(["ss", "-tan", "state", "time-wait"], capture_output=True).stdout.decode()
    return sum(1 for l in out.splitlines() if (":%d " % ports["metadata"]) in l + " " or (":%d " % ports["rating"]) in l + " ")
def est():
    out = subprocess.run(["ss", "-tan", "state", "established"], capture_output=True).stdout.decode()
    return sum(1 for l in out.splitlines() if ("127.0.0.1:%d " % ports["metadata"]) in l + " " and "127.0.0.1:%d" % ports["metadata"] == l.split()[-1])
before = tw()
req = gb.pb.GetMovieDetailsRequest(movie_id="1").SerializeToString()
print(gb.h2load(svcs["movie"].target, "/MovieService/GetMovieDetails", req, 20000, 50, 10, None))
print("TIME-WAIT to peers before %d after %d; established movie->metadata connections %d" % (before, tw(), est()))
for s in svcs.values(): s.proc.send_signal(signal.SIGTERM)
for s in svcs.values(): s.proc.wait()

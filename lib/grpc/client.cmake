# gRPC client runtime (included from lib/grpc/CMakeLists.txt).
target_sources(movie_grpc PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/client_channel.c
  ${CMAKE_CURRENT_LIST_DIR}/client_conn.c
  ${CMAKE_CURRENT_LIST_DIR}/client_resolve.c
  ${CMAKE_CURRENT_LIST_DIR}/client_session.c
  ${CMAKE_CURRENT_LIST_DIR}/client_metrics.c
  ${CMAKE_CURRENT_LIST_DIR}/client_policy.c)
# movie_cfg: a target is checked with cfg_check_host_port, as the config is.
target_link_libraries(movie_grpc PUBLIC PkgConfig::LIBUV movie_obs movie_cfg)

movie_unit_test(test_grpc_client_policy
  ${CMAKE_SOURCE_DIR}/tests/unit/grpc/test_grpc_client_policy.c movie_grpc)
movie_unit_test(test_grpc_client ${CMAKE_SOURCE_DIR}/tests/unit/grpc/test_grpc_client.c movie_grpc)
movie_unit_test(test_grpc_client_session
  ${CMAKE_SOURCE_DIR}/tests/unit/grpc/test_grpc_client_session.c movie_grpc)
movie_fuzz_target(fuzz_grpc_client_session ${CMAKE_SOURCE_DIR}/fuzz/fuzz_grpc_client_session.c
  movie_grpc)

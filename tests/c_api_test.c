/* The C API (tally/tally_c.h), from C, against a real tally-server on
 * loopback: tests/with_server.sh starts one (model kernel [8, 2] + bias [2],
 * one update per round, int8 and topk uploads) and sets TALLY_TARGET. Run
 * natively by ctest (c_api) and under qemu-user by scripts/edge_test.sh.
 * Prints "N passed, N failed" last; exits non-zero on any failure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally/tally_c.h"

static int passed = 0;
static int failed = 0;

#define CHECK(cond)                                                   \
  do {                                                                \
    if (cond) {                                                       \
      ++passed;                                                       \
    } else {                                                          \
      ++failed;                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                 \
  } while (0)

/* CHECK that `call` returned `want`; on a mismatch print the error. */
#define CHECK_CODE(call, want, err)                                           \
  do {                                                                        \
    int got_ = (call);                                                        \
    if (got_ == (want) && (err).code == (want)) {                             \
      ++passed;                                                               \
    } else {                                                                  \
      ++failed;                                                               \
      fprintf(stderr, "%s:%d: %s = %s (%s), want %s\n", __FILE__, __LINE__, #call, \
              tally_code_name(got_), (err).message, tally_code_name(want));   \
    }                                                                         \
  } while (0)

static const char* target;

/* A client with the given id offering `codecs` (NULL: float32 only). */
static tally_client* NewClient(const char* id, const char* codecs) {
  tally_error err;
  tally_options* options = tally_options_create();
  CHECK_CODE(tally_options_set(options, "target", target, &err), TALLY_OK, err);
  CHECK_CODE(tally_options_set(options, "client_id", id, &err), TALLY_OK, err);
  CHECK_CODE(tally_options_set(options, "max_attempts", "3", &err), TALLY_OK, err);
  if (codecs != NULL) {
    CHECK_CODE(tally_options_set(options, "upload_codecs", codecs, &err), TALLY_OK, err);
  }
  tally_client* client = tally_client_create(options, &err);
  tally_options_destroy(options); /* Copied by tally_client_create. */
  CHECK(client != NULL);
  return client;
}

static void TestBasics(void) {
  tally_error err;
  CHECK(strcmp(tally_sdk_version(), "0.1.0") == 0);
  CHECK(strcmp(tally_code_name(TALLY_UNAVAILABLE), "UNAVAILABLE") == 0);
  CHECK(strcmp(tally_code_name(99), "UNKNOWN") == 0);

  tally_options* options = tally_options_create();
  CHECK_CODE(tally_options_set(options, "no_such_option", "1", &err), TALLY_INVALID_ARGUMENT,
             err);
  CHECK(strstr(err.message, "no_such_option") != NULL);
  CHECK_CODE(tally_options_set(options, "max_attempts", "many", &err), TALLY_INVALID_ARGUMENT,
             err);
  CHECK_CODE(tally_options_set(options, "error_feedback", "yes", &err), TALLY_INVALID_ARGUMENT,
             err);
  /* No client id: refused at create, with the field's name. */
  tally_client* client = tally_client_create(options, &err);
  CHECK(client == NULL);
  CHECK(err.code == TALLY_INVALID_ARGUMENT && strstr(err.message, "client_id") != NULL);
  tally_options_destroy(options);
  tally_options_destroy(NULL);
  tally_client_destroy(NULL);
  /* NULL handles are errors, not crashes; a NULL error pointer is allowed. */
  CHECK(tally_client_heartbeat(NULL, &err) == TALLY_INVALID_ARGUMENT);
  CHECK(tally_client_leave(NULL, NULL) == TALLY_INVALID_ARGUMENT);
}

static void TestBeforeJoin(void) {
  tally_error err;
  tally_client* client = NewClient("c-early", NULL);
  float params[18];
  tally_tensor_info tensor;
  CHECK_CODE(tally_client_pull_model(client, 0, params, 18, NULL, &err),
             TALLY_FAILED_PRECONDITION, err);
  CHECK_CODE(tally_client_tensor(client, 0, &tensor, &err), TALLY_FAILED_PRECONDITION, err);
  tally_client_destroy(client);
}

/* Join, layout, task, pull, push (twice with one id), wait, leave. */
static void TestRound(void) {
  tally_error err;
  tally_client* client = NewClient("c-int8", "int8");
  tally_join_info join;
  CHECK_CODE(tally_client_join(client, &join, &err), TALLY_OK, err);
  CHECK(join.num_params == 18 && join.num_tensors == 2);
  CHECK(strcmp(join.upload_codec, "int8") == 0);

  tally_tensor_info tensor;
  CHECK_CODE(tally_client_tensor(client, 0, &tensor, &err), TALLY_OK, err);
  CHECK(strcmp(tensor.name, "dense/kernel") == 0 && tensor.ndim == 2 && tensor.shape[0] == 8 &&
        tensor.shape[1] == 2 && tensor.offset == 0 && tensor.size == 16);
  CHECK_CODE(tally_client_tensor(client, 1, &tensor, &err), TALLY_OK, err);
  CHECK(strcmp(tensor.name, "dense/bias") == 0 && tensor.offset == 16 && tensor.size == 2);
  CHECK_CODE(tally_client_tensor(client, 2, &tensor, &err), TALLY_OUT_OF_RANGE, err);

  tally_task task;
  CHECK_CODE(tally_client_get_task(client, 5000, &task, &err), TALLY_OK, err);
  CHECK(task.kind == TALLY_TASK_TRAIN);

  float params[18];
  tally_model_info model;
  CHECK_CODE(tally_client_pull_model(client, 0, params, 17, &model, &err),
             TALLY_INVALID_ARGUMENT, err);
  CHECK_CODE(tally_client_pull_model(client, 0, params, 18, &model, &err), TALLY_OK, err);
  CHECK(model.version == task.model_version && params[0] != 0.0f);

  float delta[18];
  for (int i = 0; i < 18; ++i) delta[i] = 0.01f * (float)(i + 1);
  tally_update update = {task.round, model.version, 10, 1, delta, 18, "c-int8-update-1"};
  update.delta_len = 17;
  CHECK_CODE(tally_client_push_update(client, &update, NULL, &err), TALLY_INVALID_ARGUMENT, err);
  update.delta_len = 18;
  tally_push_result pushed;
  CHECK_CODE(tally_client_push_update(client, &update, &pushed, &err), TALLY_OK, err);
  CHECK(strcmp(pushed.update_id, "c-int8-update-1") == 0 && !pushed.duplicate);
  CHECK(pushed.payload_bytes < 18 * sizeof(float)); /* int8: compressed. */
  /* The same id again: the server has it; reported as success. */
  CHECK_CODE(tally_client_push_update(client, &update, &pushed, &err), TALLY_OK, err);
  CHECK(pushed.duplicate == 1);

  uint64_t version = 0;
  CHECK_CODE(tally_client_wait_for_version(client, model.version, 10000, &version, &err),
             TALLY_OK, err);
  CHECK(version == model.version + 1);
  float after[18];
  CHECK_CODE(tally_client_pull_model(client, version, after, 18, &model, &err), TALLY_OK, err);
  /* int8 of 0.01..0.18 (one block, scale 0.18/127): within a step. */
  CHECK(after[17] - params[17] > 0.17f && after[17] - params[17] < 0.19f);
  CHECK_CODE(tally_client_heartbeat(client, &err), TALLY_OK, err);
  CHECK_CODE(tally_client_leave(client, &err), TALLY_OK, err);
  tally_client_destroy(client);
}

static void TestUnreachable(void) {
  tally_error err;
  tally_options* options = tally_options_create();
  tally_options_set(options, "target", "127.0.0.1:1", &err);
  tally_options_set(options, "client_id", "c-nowhere", &err);
  tally_options_set(options, "max_attempts", "2", &err);
  tally_options_set(options, "initial_backoff_ms", "10", &err);
  tally_options_set(options, "call_timeout_ms", "2000", &err);
  tally_client* client = tally_client_create(options, &err);
  tally_options_destroy(options);
  tally_join_info join;
  CHECK_CODE(tally_client_join(client, &join, &err), TALLY_UNAVAILABLE, err);
  CHECK(strstr(err.message, "Join") != NULL && err.retry_after_ms == -1);
  tally_client_destroy(client);
}

int main(int argc, char** argv) {
  target = argc > 1 ? argv[1] : getenv("TALLY_TARGET");
  if (target == NULL) {
    fprintf(stderr, "usage: %s HOST:PORT (or TALLY_TARGET)\n", argv[0]);
    return 2;
  }
  TestBasics();
  TestBeforeJoin();
  TestRound();
  TestUnreachable();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

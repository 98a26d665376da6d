/* tally C API: the C++ client SDK (tally/client.h) behind plain C types, for
 * languages that bind C (Kotlin/JNI, Swift, Rust, Python ctypes, Go cgo).
 * Part of libtally_client.so; needs no C++ at the call site.
 *
 * Handles. tally_options and tally_client are opaque; create them with the
 * *_create functions and free them with the matching *_destroy (NULL is
 * ignored). Everything else is a plain struct the caller allocates (on the
 * stack, usually) and the library fills in.
 *
 * Errors. Every fallible function returns a tally_code (TALLY_OK = 0; the
 * others are gRPC's / Abseil's status codes, same numbers) and, when `error`
 * is not NULL, writes the code and a NUL-terminated message into it
 * (truncated to fit). No C++ exception crosses this boundary: one escaping
 * the SDK (out of memory, say) becomes TALLY_INTERNAL / TALLY_RESOURCE_EXHAUSTED.
 *
 * Memory. The library never keeps a pointer the caller passed in beyond the
 * call: strings are copied, a delta is read during tally_client_push_update
 * only (streamed from the caller's buffer, not copied whole), a pulled model
 * is written into the caller's buffer. Strings the library returns
 * (tally_sdk_version, tally_code_name) are static.
 *
 * Threads. A tally_client may be used from several threads at once (e.g. a
 * heartbeat thread while another pushes), as the C++ Client; only
 * tally_client_destroy must not race with any other call on the same client.
 * A tally_options is not synchronized: set it up on one thread; it is copied
 * by tally_client_create and may be destroyed right after. Calls block the
 * calling thread (network calls, retries with backoff); call them off an
 * app's UI thread.
 */
#ifndef TALLY_CLIENT_TALLY_C_H_
#define TALLY_CLIENT_TALLY_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: gRPC's numbering. */
typedef enum tally_code {
  TALLY_OK = 0,
  TALLY_CANCELLED = 1,
  TALLY_UNKNOWN = 2,
  TALLY_INVALID_ARGUMENT = 3,
  TALLY_DEADLINE_EXCEEDED = 4,
  TALLY_NOT_FOUND = 5,
  TALLY_ALREADY_EXISTS = 6,
  TALLY_PERMISSION_DENIED = 7,
  TALLY_RESOURCE_EXHAUSTED = 8,
  TALLY_FAILED_PRECONDITION = 9,
  TALLY_ABORTED = 10,
  TALLY_OUT_OF_RANGE = 11,
  TALLY_UNIMPLEMENTED = 12,
  TALLY_INTERNAL = 13,
  TALLY_UNAVAILABLE = 14,
  TALLY_DATA_LOSS = 15,
  TALLY_UNAUTHENTICATED = 16
} tally_code;

#define TALLY_ERROR_MESSAGE_SIZE 512

/* The outcome of a call: its code and message. Caller-owned. */
typedef struct tally_error {
  int code; /* A tally_code. */
  /* NUL-terminated; empty on success. */
  char message[TALLY_ERROR_MESSAGE_SIZE];
  /* With TALLY_RESOURCE_EXHAUSTED: the server's retry hint in ms, else -1.
   * The SDK already waited and retried as long as its options allow. */
  int64_t retry_after_ms;
} tally_error;

typedef struct tally_options tally_options; /* Opaque. */
typedef struct tally_client tally_client;   /* Opaque. */

/* The SDK's version, e.g. "0.1.0". Static. */
const char* tally_sdk_version(void);
/* "OK", "UNAVAILABLE", ...; "UNKNOWN" for a number outside tally_code. Static. */
const char* tally_code_name(int code);

/* ---- Options --------------------------------------------------------- */

/* Defaults as tally::ClientOptions. NULL only when out of memory. */
tally_options* tally_options_create(void);
void tally_options_destroy(tally_options* options);

/* Sets one option by name from its text (strings verbatim, numbers in
 * decimal, durations in milliseconds, lists comma-separated):
 *   target, client_id, seed, max_attempts, initial_backoff_ms,
 *   max_backoff_ms, backoff_multiplier, call_timeout_ms,
 *   transfer_timeout_ms, chunk_bytes, max_bandwidth_bytes_per_s,
 *   tls_ca_file, tls_server_name, tls_cert_file, tls_key_file, auth_token,
 *   upload_codecs, download_codecs, error_feedback ("0" / "1").
 * Their meaning: tally/client.h, ClientOptions. TALLY_INVALID_ARGUMENT for
 * an unknown name or a value that does not parse (the options unchanged);
 * whole-option checks happen in tally_client_create. */
int tally_options_set(tally_options* options, const char* name, const char* value,
                      tally_error* error);

/* ---- Client ---------------------------------------------------------- */

/* A client for options' target (no network traffic yet). NULL on error
 * (invalid options, unreadable TLS files), described in `error`. */
tally_client* tally_client_create(const tally_options* options, tally_error* error);
/* Leaves the session if joined (one attempt of at most a second), frees. */
void tally_client_destroy(tally_client* client);

#define TALLY_CODEC_NAME_SIZE 16
#define TALLY_TENSOR_NAME_SIZE 256
#define TALLY_MAX_DIMS 8

typedef struct tally_join_info {
  uint64_t model_version;
  uint64_t num_params;   /* Floats in the model, and in every delta. */
  uint64_t layout_hash;
  uint32_t num_tensors;  /* For tally_client_tensor. */
  uint32_t max_chunk_bytes;
  uint64_t max_update_bytes;
  int64_t heartbeat_interval_ms;
  char upload_codec[TALLY_CODEC_NAME_SIZE];    /* What pushes are encoded with. */
  char download_codec[TALLY_CODEC_NAME_SIZE];  /* What pulls arrive in. */
} tally_join_info;

typedef struct tally_tensor_info {
  char name[TALLY_TENSOR_NAME_SIZE];
  uint32_t ndim;
  int64_t shape[TALLY_MAX_DIMS];
  uint64_t offset;  /* Of its first float in the flat model. */
  uint64_t size;    /* Floats. */
} tally_tensor_info;

enum { TALLY_TASK_TRAIN = 0, TALLY_TASK_WAIT = 1, TALLY_TASK_DONE = 2 };

typedef struct tally_task {
  int kind;  /* TALLY_TASK_*. */
  uint64_t round;
  uint64_t model_version;
  uint32_t local_steps;    /* 0: the client decides. */
  int64_t retry_after_ms;  /* TALLY_TASK_WAIT: when to ask again. */
} tally_task;

typedef struct tally_model_info {
  uint64_t version;
  uint64_t round;
  uint64_t payload_bytes;  /* Bytes received (after compression). */
} tally_model_info;

typedef struct tally_update {
  uint64_t round;
  uint64_t base_version;  /* The version the delta was trained from. */
  uint64_t num_samples;   /* Weight; > 0. */
  uint32_t local_steps;
  const float* delta;     /* local - base model, num_params floats. */
  size_t delta_len;
  const char* update_id;  /* NULL or "": generated. Keep it to retry by hand. */
} tally_update;

#define TALLY_UPDATE_ID_SIZE 129

typedef struct tally_push_result {
  char update_id[TALLY_UPDATE_ID_SIZE];
  int duplicate;  /* 1: the server already had this update (not counted twice). */
  uint64_t round;
  uint64_t model_version;
  uint32_t attempts;
  uint64_t payload_bytes;  /* Bytes sent (after compression). */
} tally_push_result;

/* Opens a session (again: replaces this client's). */
int tally_client_join(tally_client* client, tally_join_info* info, tally_error* error);

/* Tensor `index` (< num_tensors) of the model as of the last join.
 * TALLY_FAILED_PRECONDITION before a join, TALLY_OUT_OF_RANGE past the
 * last, TALLY_RESOURCE_EXHAUSTED if its name or rank does not fit. */
int tally_client_tensor(tally_client* client, uint32_t index, tally_tensor_info* info,
                        tally_error* error);

/* What to do next; waits up to wait_ms on the server when there is nothing. */
int tally_client_get_task(tally_client* client, int64_t wait_ms, tally_task* task,
                          tally_error* error);

/* Writes the model at `version` (0 = latest) into params[0, num_params).
 * TALLY_INVALID_ARGUMENT if capacity < num_params (nothing written). */
int tally_client_pull_model(tally_client* client, uint64_t version, float* params,
                            size_t capacity, tally_model_info* info, tally_error* error);

/* Pushes one update (retried with the same update id on transient errors;
 * a duplicate counts as success). `result` may be NULL. */
int tally_client_push_update(tally_client* client, const tally_update* update,
                             tally_push_result* result, tally_error* error);

/* Waits until a version > after_version is published (or timeout_ms:
 * TALLY_DEADLINE_EXCEEDED); `version` gets the newest seen. */
int tally_client_wait_for_version(tally_client* client, uint64_t after_version,
                                  int64_t timeout_ms, uint64_t* version, tally_error* error);

int tally_client_heartbeat(tally_client* client, tally_error* error);
int tally_client_leave(tally_client* client, tally_error* error);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TALLY_CLIENT_TALLY_C_H_ */

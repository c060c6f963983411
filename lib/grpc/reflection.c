/*
 * gRPC server reflection, protocol side: an index of a FileDescriptorSet and
 * the answers to ServerReflectionRequest messages.
 *
 * The set is read at the wire level (a few fields of descriptor.proto) rather
 * than through generated descriptor.proto code: Debian ships descriptor.proto
 * with no package our build depends on, and reflection only needs names. The
 * file bytes are served exactly as protoc wrote them.
 */
#include "movie/grpc_reflection.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1/reflection.pb-c.h"
#include "movie/buf.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/banned.h"

#define MAX_NAME    1024 /* longest fully-qualified symbol */
#define MAX_NESTING 32   /* message nesting depth */
#define PB_VARINT   0
#define PB_FIXED64  1
#define PB_LEN      2
#define PB_FIXED32  5

struct symbol {
	char *name;
	uint32_t file;
};

struct extension {
	char *extendee; /* fully-qualified, no leading '.' */
	int32_t number;
	uint32_t file;
};

struct file {
	const uint8_t *data;
	size_t len;
	char *name;
	uint32_t *deps;
	size_t dep_count;
};

struct grpc_reflection {
	struct file *files;
	size_t file_count;
	struct symbol *symbols;
	size_t symbol_count, symbol_cap;
	struct extension *extensions;
	size_t extension_count, extension_cap;
};

/* ---- protobuf wire reading ---- */

struct pb {
	const uint8_t *p, *end;
};

struct pb_field {
	uint32_t number;
	uint32_t type;
	uint64_t varint;
	const uint8_t *data;
	size_t len;
};

static int pb_varint(struct pb *r, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (r->p == r->end)
			return MV_EPROTO;
		uint8_t b = *r->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return MV_EPROTO;
}

/* Returns 1 with *f filled, 0 at the end, MV_EPROTO. */
static int pb_next(struct pb *r, struct pb_field *f)
{
	if (r->p == r->end)
		return 0;
	uint64_t key;
	if (pb_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
		return MV_EPROTO;
	f->number = (uint32_t)(key >> 3);
	f->type = (uint32_t)(key & 7);
	f->data = NULL;
	f->len = 0;
	f->varint = 0;
	size_t left;
	switch (f->type) {
	case PB_VARINT: return pb_varint(r, &f->varint) ? MV_EPROTO : 1;
	case PB_FIXED64:
	case PB_FIXED32:
		left = (size_t)(r->end - r->p);
		f->len = f->type == PB_FIXED64 ? 8 : 4;
		if (left < f->len)
			return MV_EPROTO;
		f->data = r->p;
		r->p += f->len;
		return 1;
	case PB_LEN:
		if (pb_varint(r, &f->varint))
			return MV_EPROTO;
		left = (size_t)(r->end - r->p);
		if (f->varint > left)
			return MV_EPROTO;
		f->data = r->p;
		f->len = (size_t)f->varint;
		r->p += f->len;
		return 1;
	default: return MV_EPROTO; /* groups: not in descriptor.proto's fields we read */
	}
}

/* The string field `number` of the message data..len (the last one wins, as
 * protobuf merges). Returns 0 (out and out_len set, empty when absent), MV_EPROTO. */
static int pb_string(const uint8_t *data, size_t len, uint32_t number, const uint8_t **out,
                     size_t *out_len)
{
	struct pb r = {data, data + len};
	struct pb_field f;
	int rc;
	*out = (const uint8_t *)"";
	*out_len = 0;
	while ((rc = pb_next(&r, &f)) == 1) {
		if (f.number != number)
			continue;
		if (f.type != PB_LEN)
			return MV_EPROTO;
		*out = f.data;
		*out_len = f.len;
	}
	return rc;
}

/* ---- index building ---- */

static char *join_name(const char *scope, const uint8_t *name, size_t len)
{
	size_t slen = strlen(scope);
	if (len == 0 || memchr(name, '\0', len) || slen + 1 + len > MAX_NAME)
		return NULL;
	char *out = malloc(slen + 1 + len + 1);
	if (!out)
		return NULL;
	size_t n = 0;
	if (slen) {
		memcpy(out, scope, slen);
		out[slen] = '.';
		n = slen + 1;
	}
	memcpy(out + n, name, len);
	out[n + len] = '\0';
	return out;
}

/* Takes ownership of `name` (NULL: a bad name, MV_EPROTO). */
static int add_symbol(struct grpc_reflection *r, char *name, uint32_t file)
{
	if (!name)
		return MV_EPROTO;
	if (r->symbol_count == GRPC_REFLECTION_MAX_SYMBOLS) {
		free(name);
		return MV_ETOOBIG;
	}
	if (r->symbol_count == r->symbol_cap) {
		size_t cap = r->symbol_cap ? r->symbol_cap * 2 : 64;
		struct symbol *s = realloc(r->symbols, cap * sizeof(*s));
		if (!s) {
			free(name);
			return MV_ENOMEM;
		}
		r->symbols = s;
		r->symbol_cap = cap;
	}
	r->symbols[r->symbol_count].name = name;
	r->symbols[r->symbol_count].file = file;
	r->symbol_count++;
	return 0;
}

/* A symbol named by field 1 of data..len, in `scope`. *full gets a copy of
 * the full name when asked for (the caller frees it). */
static int add_named(struct grpc_reflection *r, const char *scope, const uint8_t *data, size_t len,
                     uint32_t file, char **full)
{
	const uint8_t *name;
	size_t name_len;
	if (pb_string(data, len, 1, &name, &name_len))
		return MV_EPROTO;
	char *sym = join_name(scope, name, name_len);
	if (full) {
		*full = sym ? strdup(sym) : NULL;
		if (sym && !*full) {
			free(sym);
			return MV_ENOMEM;
		}
	}
	int rc = add_symbol(r, sym, file);
	if (rc && full) {
		free(*full);
		*full = NULL;
	}
	return rc;
}

/* An extension field (FieldDescriptorProto with extendee = 2, number = 3). */
static int add_extension(struct grpc_reflection *r, const char *scope, const uint8_t *data,
                         size_t len, uint32_t file)
{
	int rc = add_named(r, scope, data, len, file, NULL);
	if (rc)
		return rc;
	const uint8_t *extendee;
	size_t extendee_len;
	if (pb_string(data, len, 2, &extendee, &extendee_len))
		return MV_EPROTO;
	if (extendee_len && extendee[0] == '.') {
		extendee++;
		extendee_len--;
	}
	int64_t number = 0;
	struct pb p = {data, data + len};
	struct pb_field f;
	while ((rc = pb_next(&p, &f)) == 1)
		if (f.number == 3 && f.type == PB_VARINT)
			number = (int64_t)f.varint;
	if (rc < 0)
		return rc;
	if (r->extension_count == r->extension_cap) {
		size_t cap = r->extension_cap ? r->extension_cap * 2 : 8;
		if (cap > GRPC_REFLECTION_MAX_SYMBOLS)
			return MV_ETOOBIG;
		struct extension *e = realloc(r->extensions, cap * sizeof(*e));
		if (!e)
			return MV_ENOMEM;
		r->extensions = e;
		r->extension_cap = cap;
	}
	char *name = join_name("", extendee, extendee_len);
	if (!name)
		return MV_EPROTO;
	struct extension *e = &r->extensions[r->extension_count++];
	e->extendee = name;
	e->number = (int32_t)number;
	e->file = file;
	return 0;
}

/* EnumDescriptorProto: the enum in `scope`, its values beside it (protobuf
 * scopes enum values like C++ enumerators: siblings of their enum). */
static int index_enum(struct grpc_reflection *r, const char *scope, const uint8_t *data, size_t len,
                      uint32_t file)
{
	int rc = add_named(r, scope, data, len, file, NULL);
	if (rc)
		return rc;
	struct pb p = {data, data + len};
	struct pb_field f;
	while ((rc = pb_next(&p, &f)) == 1) {
		if (f.number != 2)
			continue;
		if (f.type != PB_LEN)
			return MV_EPROTO;
		rc = add_named(r, scope, f.data, f.len, file, NULL);
		if (rc)
			return rc;
	}
	return rc;
}

/* DescriptorProto: the message, its fields, oneofs, nested types, enums and
 * extensions. */
static int index_message(struct grpc_reflection *r, const char *scope, const uint8_t *data,
                         size_t len, uint32_t file, int depth)
{
	if (depth > MAX_NESTING)
		return MV_EPROTO;
	char *full = NULL;
	int rc = add_named(r, scope, data, len, file, &full);
	if (rc)
		return rc;
	struct pb p = {data, data + len};
	struct pb_field f;
	while ((rc = pb_next(&p, &f)) == 1) {
		if (f.number != 2 && f.number != 3 && f.number != 4 && f.number != 6 &&
		    f.number != 8)
			continue;
		if (f.type != PB_LEN) {
			rc = MV_EPROTO;
			break;
		}
		switch (f.number) {
		case 2: /* field */
		case 8: /* oneof_decl */ rc = add_named(r, full, f.data, f.len, file, NULL); break;
		case 3: rc = index_message(r, full, f.data, f.len, file, depth + 1); break;
		case 4: rc = index_enum(r, full, f.data, f.len, file); break;
		case 6: rc = add_extension(r, full, f.data, f.len, file); break;
		}
		if (rc)
			break;
	}
	free(full);
	return rc;
}

/* ServiceDescriptorProto: the service and its methods. */
static int index_service(struct grpc_reflection *r, const char *scope, const uint8_t *data,
                         size_t len, uint32_t file)
{
	char *full = NULL;
	int rc = add_named(r, scope, data, len, file, &full);
	if (rc)
		return rc;
	struct pb p = {data, data + len};
	struct pb_field f;
	while ((rc = pb_next(&p, &f)) == 1) {
		if (f.number != 2)
			continue;
		rc = f.type == PB_LEN ? add_named(r, full, f.data, f.len, file, NULL) : MV_EPROTO;
		if (rc)
			break;
	}
	free(full);
	return rc;
}

/* FileDescriptorProto: name 1, package 2, dependency 3, message_type 4,
 * enum_type 5, service 6, extension 7. */
static int index_file(struct grpc_reflection *r, uint32_t index)
{
	struct file *file = &r->files[index];
	const uint8_t *s;
	size_t n;
	if (pb_string(file->data, file->len, 1, &s, &n))
		return MV_EPROTO;
	file->name = join_name("", s, n);
	if (!file->name)
		return MV_EPROTO;
	if (pb_string(file->data, file->len, 2, &s, &n))
		return MV_EPROTO;
	char *package = n ? join_name("", s, n) : strdup("");
	if (!package)
		return n ? MV_EPROTO : MV_ENOMEM;
	int rc = 0;
	if (*package) {
		char *copy = strdup(package);
		rc = copy ? add_symbol(r, copy, index) : MV_ENOMEM;
	}
	struct pb p = {file->data, file->data + file->len};
	struct pb_field f;
	while (rc == 0 && (rc = pb_next(&p, &f)) == 1) {
		rc = 0;
		if (f.number < 4 || f.number > 7)
			continue;
		if (f.type != PB_LEN) {
			rc = MV_EPROTO;
			break;
		}
		switch (f.number) {
		case 4: rc = index_message(r, package, f.data, f.len, index, 0); break;
		case 5: rc = index_enum(r, package, f.data, f.len, index); break;
		case 6: rc = index_service(r, package, f.data, f.len, index); break;
		case 7: rc = add_extension(r, package, f.data, f.len, index); break;
		}
	}
	free(package);
	return rc < 0 ? rc : 0;
}

static long find_file(const struct grpc_reflection *r, const char *name)
{
	for (size_t i = 0; i < r->file_count; i++)
		if (strcmp(r->files[i].name, name) == 0)
			return (long)i;
	return -1;
}

/* Resolve each file's imports (field 3) to file indexes. */
static int resolve_deps(struct grpc_reflection *r, uint32_t index)
{
	struct file *file = &r->files[index];
	struct pb p = {file->data, file->data + file->len};
	struct pb_field f;
	int rc;
	while ((rc = pb_next(&p, &f)) == 1) {
		if (f.number != 3)
			continue;
		char *name = f.type == PB_LEN ? join_name("", f.data, f.len) : NULL;
		if (!name)
			return MV_EPROTO;
		long dep = find_file(r, name);
		free(name);
		if (dep < 0)
			return MV_EPROTO; /* protoc --include_imports puts every import in */
		uint32_t *deps = realloc(file->deps, (file->dep_count + 1) * sizeof(*deps));
		if (!deps)
			return MV_ENOMEM;
		file->deps = deps;
		file->deps[file->dep_count++] = (uint32_t)dep;
	}
	return rc;
}

static int symbol_cmp(const void *a, const void *b)
{
	return strcmp(((const struct symbol *)a)->name, ((const struct symbol *)b)->name);
}

int grpc_reflection_new(const uint8_t *set, size_t len, struct grpc_reflection **out)
{
	*out = NULL;
	if (len > GRPC_REFLECTION_MAX_SET_BYTES)
		return MV_ETOOBIG;
	struct grpc_reflection *r = calloc(1, sizeof(*r));
	if (!r)
		return MV_ENOMEM;
	int rc;
	/* FileDescriptorSet: repeated FileDescriptorProto file = 1. */
	struct pb p = {set, set + len};
	struct pb_field f;
	size_t cap = 0;
	while ((rc = pb_next(&p, &f)) == 1) {
		if (f.number != 1)
			continue;
		if (f.type != PB_LEN) {
			rc = MV_EPROTO;
			goto fail;
		}
		if (r->file_count == GRPC_REFLECTION_MAX_FILES) {
			rc = MV_ETOOBIG;
			goto fail;
		}
		if (r->file_count == cap) {
			cap = cap ? cap * 2 : 8;
			struct file *files = realloc(r->files, cap * sizeof(*files));
			if (!files) {
				rc = MV_ENOMEM;
				goto fail;
			}
			r->files = files;
		}
		struct file *file = &r->files[r->file_count++];
		memset(file, 0, sizeof(*file));
		file->data = f.data;
		file->len = f.len;
		rc = index_file(r, (uint32_t)(r->file_count - 1));
		if (rc)
			goto fail;
		if (find_file(r, file->name) != (long)r->file_count - 1) {
			rc = MV_EPROTO; /* the same file twice */
			goto fail;
		}
	}
	if (rc < 0)
		goto fail;
	for (size_t i = 0; i < r->file_count; i++) {
		rc = resolve_deps(r, (uint32_t)i);
		if (rc)
			goto fail;
	}
	if (r->symbol_count)
		qsort(r->symbols, r->symbol_count, sizeof(*r->symbols), symbol_cmp);
	*out = r;
	return 0;
fail:
	grpc_reflection_free(r);
	return rc;
}

void grpc_reflection_free(struct grpc_reflection *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->file_count; i++) {
		free(r->files[i].name);
		free(r->files[i].deps);
	}
	for (size_t i = 0; i < r->symbol_count; i++)
		free(r->symbols[i].name);
	for (size_t i = 0; i < r->extension_count; i++)
		free(r->extensions[i].extendee);
	free(r->files);
	free(r->symbols);
	free(r->extensions);
	free(r);
}

size_t grpc_reflection_file_count(const struct grpc_reflection *r)
{
	return r->file_count;
}

/* ---- answers ---- */

static long find_symbol(const struct grpc_reflection *r, const char *name)
{
	struct symbol key = {(char *)(uintptr_t)name, 0};
	if (!r->symbol_count)
		return -1;
	const struct symbol *s =
	    bsearch(&key, r->symbols, r->symbol_count, sizeof(*r->symbols), symbol_cmp);
	return s ? (long)s->file : -1;
}

/* `file` first, then its imports, transitively, each once. */
static size_t collect_files(const struct grpc_reflection *r, uint32_t file, bool *seen,
                            uint32_t *order)
{
	size_t n = 0;
	order[n++] = file;
	seen[file] = true;
	for (size_t i = 0; i < n; i++) {
		const struct file *f = &r->files[order[i]];
		for (size_t d = 0; d < f->dep_count; d++) {
			if (!seen[f->deps[d]]) {
				seen[f->deps[d]] = true;
				order[n++] = f->deps[d];
			}
		}
	}
	return n;
}

/* The oneof cases of requests and responses, named short. */
#define REQUEST(kind)  GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##kind
#define RESPONSE(kind) GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##kind

/* Every answer's last step: `resp` with its `kind` member set is packed
 * into `out`. */
static int encode_answer(Grpc__Reflection__V1__ServerReflectionResponse *resp,
                         Grpc__Reflection__V1__ServerReflectionResponse__MessageResponseCase kind,
                         struct buf *out)
{
	resp->message_response_case = kind;
	size_t size = grpc__reflection__v1__server_reflection_response__get_packed_size(resp);
	int rc = buf_reserve(out, size);
	if (rc)
		return rc;
	grpc__reflection__v1__server_reflection_response__pack(resp,
	                                                       (uint8_t *)out->data + out->len);
	out->len += size;
	out->data[out->len] = '\0';
	return 0;
}

static int answer_files(const struct grpc_reflection *r,
                        Grpc__Reflection__V1__ServerReflectionResponse *resp, uint32_t file,
                        struct buf *out)
{
	bool *seen = calloc(r->file_count, sizeof(*seen));
	uint32_t *order = calloc(r->file_count, sizeof(*order));
	ProtobufCBinaryData *blobs = calloc(r->file_count, sizeof(*blobs));
	int rc = MV_ENOMEM;
	if (seen && order && blobs) {
		size_t n = collect_files(r, file, seen, order);
		for (size_t i = 0; i < n; i++) {
			blobs[i].data = (uint8_t *)(uintptr_t)r->files[order[i]].data;
			blobs[i].len = r->files[order[i]].len;
		}
		Grpc__Reflection__V1__FileDescriptorResponse fdr;
		grpc__reflection__v1__file_descriptor_response__init(&fdr);
		fdr.n_file_descriptor_proto = n;
		fdr.file_descriptor_proto = blobs;
		resp->file_descriptor_response = &fdr;
		rc = encode_answer(resp, RESPONSE(FILE_DESCRIPTOR_RESPONSE), out);
	}
	free(blobs);
	free(order);
	free(seen);
	return rc;
}

static int answer_error(Grpc__Reflection__V1__ServerReflectionResponse *resp, int code,
                        const char *what, const char *name, struct buf *out)
{
	char message[MAX_NAME + 64];
	snprintf(message, sizeof(message), "%s: %.*s", what, MAX_NAME, name);
	Grpc__Reflection__V1__ErrorResponse err;
	grpc__reflection__v1__error_response__init(&err);
	err.error_code = code;
	err.error_message = message;
	resp->error_response = &err;
	return encode_answer(resp, RESPONSE(ERROR_RESPONSE), out);
}

static int answer_services(Grpc__Reflection__V1__ServerReflectionResponse *resp,
                           const char *const *services, size_t count, struct buf *out)
{
	Grpc__Reflection__V1__ServiceResponse *items = calloc(count ? count : 1, sizeof(*items));
	Grpc__Reflection__V1__ServiceResponse **ptrs = calloc(count ? count : 1, sizeof(*ptrs));
	int rc = MV_ENOMEM;
	if (items && ptrs) {
		for (size_t i = 0; i < count; i++) {
			grpc__reflection__v1__service_response__init(&items[i]);
			items[i].name = (char *)(uintptr_t)services[i];
			ptrs[i] = &items[i];
		}
		Grpc__Reflection__V1__ListServiceResponse list;
		grpc__reflection__v1__list_service_response__init(&list);
		list.n_service = count;
		list.service = ptrs;
		resp->list_services_response = &list;
		rc = encode_answer(resp, RESPONSE(LIST_SERVICES_RESPONSE), out);
	}
	free(ptrs);
	free(items);
	return rc;
}

static int answer_extension_numbers(const struct grpc_reflection *r,
                                    Grpc__Reflection__V1__ServerReflectionResponse *resp,
                                    const char *type, struct buf *out)
{
	int32_t *numbers = calloc(r->extension_count ? r->extension_count : 1, sizeof(*numbers));
	if (!numbers)
		return MV_ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < r->extension_count; i++)
		if (strcmp(r->extensions[i].extendee, type) == 0)
			numbers[n++] = r->extensions[i].number;
	Grpc__Reflection__V1__ExtensionNumberResponse ext;
	grpc__reflection__v1__extension_number_response__init(&ext);
	ext.base_type_name = (char *)(uintptr_t)type;
	ext.n_extension_number = n;
	ext.extension_number = numbers;
	resp->all_extension_numbers_response = &ext;
	int rc = encode_answer(resp, RESPONSE(ALL_EXTENSION_NUMBERS_RESPONSE), out);
	free(numbers);
	return rc;
}

/* The three requests answered with a file and its imports: the file's
 * index, or -1 with *what and *name set to the NOT_FOUND message's parts.
 * Any other request: -1 with *what left NULL. */
static long file_of_request(const struct grpc_reflection *r,
                            const Grpc__Reflection__V1__ServerReflectionRequest *req,
                            const char **what, const char **name)
{
	const Grpc__Reflection__V1__ExtensionRequest *ext = req->file_containing_extension;
	long file = -1;
	switch (req->message_request_case) {
	case REQUEST(FILE_BY_FILENAME):
		*what = "file not found";
		*name = req->file_by_filename;
		return find_file(r, req->file_by_filename);
	case REQUEST(FILE_CONTAINING_SYMBOL):
		*what = "symbol not found";
		*name = req->file_containing_symbol;
		return find_symbol(r, req->file_containing_symbol);
	case REQUEST(FILE_CONTAINING_EXTENSION):
		*what = "extension not found";
		*name = ext ? ext->containing_type : "";
		for (size_t i = 0; ext && i < r->extension_count; i++)
			if (r->extensions[i].number == ext->extension_number &&
			    strcmp(r->extensions[i].extendee, ext->containing_type) == 0)
				file = r->extensions[i].file;
		return file;
	default: return -1;
	}
}

int grpc_reflection_answer(const struct grpc_reflection *r, const uint8_t *req_bytes, size_t len,
                           const char *const *services, size_t service_count, struct buf *out)
{
	Grpc__Reflection__V1__ServerReflectionRequest *req =
	    grpc__reflection__v1__server_reflection_request__unpack(NULL, len, req_bytes);
	if (!req)
		return MV_EPROTO;
	Grpc__Reflection__V1__ServerReflectionResponse resp;
	grpc__reflection__v1__server_reflection_response__init(&resp);
	resp.valid_host = req->host;
	resp.original_request = req;
	const char *what = NULL, *name = "";
	long file = file_of_request(r, req, &what, &name);
	int rc;
	if (file >= 0)
		rc = answer_files(r, &resp, (uint32_t)file, out);
	else if (what)
		rc = answer_error(&resp, GRPC_STATUS_NOT_FOUND, what, name, out);
	else if (req->message_request_case == REQUEST(ALL_EXTENSION_NUMBERS_OF_TYPE))
		rc = find_symbol(r, req->all_extension_numbers_of_type) >= 0
		         ? answer_extension_numbers(r, &resp, req->all_extension_numbers_of_type,
		                                    out)
		         : answer_error(&resp, GRPC_STATUS_NOT_FOUND, "type not found",
		                        req->all_extension_numbers_of_type, out);
	else if (req->message_request_case == REQUEST(LIST_SERVICES))
		rc = answer_services(&resp, services, service_count, out);
	else
		rc = answer_error(&resp, GRPC_STATUS_INVALID_ARGUMENT, "no request in the message",
		                  "", out);
	grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
	return rc;
}

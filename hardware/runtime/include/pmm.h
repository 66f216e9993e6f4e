/* paddle_mm board runtime: Chinese-CLIP image and text towers on ggml, behind a small C API.
 *
 * A model is a GGUF file written by tools/export_gguf.py: fp32 weights, the architecture, the image
 * pre-processing parameters and the tokenizer. Pre-processing (PIL-exact bicubic resize, CLIP
 * normalisation) and the WordPiece tokenizer give the same pixels and ids as paddle_mm's Python code.
 *
 * Every function that can fail returns 0 on success and a nonzero PMM_E* code otherwise; the message
 * is then in pmm_last_error(model) (or in `err` for pmm_load). Features are the towers' unnormalised
 * outputs, as paddle_mm's encode_image / encode_text return them. */
#ifndef PMM_H
#define PMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    PMM_OK = 0,
    PMM_EUSAGE = 2,    /* a bad argument (size, count, option) */
    PMM_EMODEL = 3,    /* the model file is missing, unreadable or not a paddle_mm GGUF */
    PMM_EINPUT = 4,    /* an image cannot be read or decoded */
    PMM_EVERIFY = 5,   /* a signed package failed verification: nothing was loaded */
    PMM_ECOMPUTE = 6   /* ggml failed to allocate or compute */
};

typedef struct pmm_model pmm_model;

/* Load `gguf_path`; n_threads <= 0 uses all cores. NULL on failure, message in err. */
pmm_model * pmm_load(const char * gguf_path, int n_threads, char * err, size_t err_len);
void pmm_free(pmm_model * model);
const char * pmm_last_error(const pmm_model * model);

int pmm_embed_dim(const pmm_model * model);
int pmm_image_size(const pmm_model * model);      /* S: pixels are float32 [3, S, S] per image */
int pmm_context_length(const pmm_model * model);  /* ids are int64 [context_length] per text */
float pmm_logit_scale(const pmm_model * model);   /* exp(logit_scale) */

/* [CLS] + first context_length - 2 word pieces + [SEP], padded with [PAD]: ids[context_length].
 * The text is `len` bytes of UTF-8 (it may contain NUL, which BERT deletes); invalid bytes are skipped. */
int pmm_tokenize(pmm_model * model, const char * utf8_text, size_t len, int64_t * ids);

/* Decode a JPEG/PNG/BMP/... file (stb_image) and pre-process it into pixels[3 * S * S]. */
int pmm_preprocess_file(pmm_model * model, const char * path, float * pixels);
/* Pre-process an RGB uint8 image (h, w, 3) into pixels[3 * S * S]. */
int pmm_preprocess_rgb(pmm_model * model, const uint8_t * rgb, int width, int height, float * pixels);

/* pixels [n, 3, S, S] -> features [n, embed_dim]. */
int pmm_encode_images(pmm_model * model, const float * pixels, int n, float * features);
/* ids [n, context_length] (as pmm_tokenize writes them) -> features [n, embed_dim]. */
int pmm_encode_texts(pmm_model * model, const int64_t * ids, int n, float * features);

#ifdef __cplusplus
}
#endif

#endif /* PMM_H */

// Chinese-CLIP image pre-processing equal to paddle_mm.vision.ImageTransform: a square resize with
// Pillow's bicubic filter (anti-aliased when shrinking, 22-bit fixed point, uint8 between the two
// passes, the pass order of Pillow >= 13 or <= 12), then ((v / 255) - mean) / std in float32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pmm {

struct ImagePre {
    int size = 224;
    float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    bool pillow13_order = true;  // "pil_bicubic"; false: "pil12_bicubic"
};

// uint8 RGB (h, w, 3) -> resized uint8 RGB (out_h, out_w, 3), bit for bit Pillow's BICUBIC resize.
std::vector<uint8_t> resize_bicubic_pil(const uint8_t * rgb, int w, int h, int out_w, int out_h, bool pillow13_order);
// uint8 RGB (h, w, 3) -> float32 (3, size, size).
void preprocess_rgb(const ImagePre & pre, const uint8_t * rgb, int w, int h, float * pixels);
// Decode with stb_image into RGB; false with a message on failure.
bool decode_image_file(const std::string & path, std::vector<uint8_t> & rgb, int & w, int & h, std::string & err);

}  // namespace pmm

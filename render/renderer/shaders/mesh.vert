#version 330 core
// dcign's replacement for pyrender's PBR vertex shader: rigid transforms only, so the normal
// matrix is the model matrix itself and no per-vertex inverse() is needed.
layout(location = 0) in vec3 position;
layout(location = NORMAL_LOC) in vec3 normal;
#ifdef COLOR_0_LOC
layout(location = COLOR_0_LOC) in vec4 color_0;
#endif
#ifdef TEXCOORD_0_LOC
layout(location = TEXCOORD_0_LOC) in vec2 texcoord_0;
#endif
layout(location = INST_M_LOC) in mat4 inst_m;

uniform mat4 M;
uniform mat4 V;
uniform mat4 P;

out vec3 frag_position;
out vec3 frag_normal;
#if CHANNELS == 3
out vec3 frag_albedo;          // rgb reflectance
#else
out float frag_albedo;
#endif
out vec3 frag_object;          // object-space position: solid textures turn with the object
flat out vec2 frag_material;   // (texture code / 8, pattern scale), constant per part

void main()
{
    mat4 model = M * inst_m;
    vec4 world = model * vec4(position, 1.0);
    gl_Position = P * V * world;
    frag_position = world.xyz;
    frag_normal = mat3(model) * normal;
    frag_object = position;
#if CHANNELS == 3
    // rgb: the vertex colour is the reflectance; material codes come as texture coordinates
#ifdef COLOR_0_LOC
    frag_albedo = color_0.rgb;
#else
    frag_albedo = vec3(0.7);
#endif
#ifdef TEXCOORD_0_LOC
    frag_material = texcoord_0;
#else
    frag_material = vec2(0.0);
#endif
#else
#ifdef COLOR_0_LOC
    frag_albedo = color_0.r;  // grayscale reflectance
    frag_material = color_0.gb;
#else
    frag_albedo = 0.7;
    frag_material = vec2(0.0);
#endif
#endif
}

#version 330 core
// Faces' shader: the same Lambert + weak Blinn-Phong light as mesh.frag's plain albedo
// (material 0), evaluated per vertex. A face's triangles are 1-3 pixels at 150×150, so this
// looks the same as per-pixel lighting (tests/render/test_renderer.py bounds the difference),
// and one interpolated value instead of eleven halves llvmpipe's per-triangle cost
// (docs/results.md).
//
// LIGHTS_PER_PASS (set by the Renderer) is 1, or 4 for a light minibatch: the object and
// camera stay, so four lights are shaded over one rasterisation, one per colour channel
// (R, G, B, A). pyrender binds its lights in no fixed order, so each light's colour names
// its channel: (1,0,0) red, (0,1,0) green, (0,0,1) blue, (0,0,0) alpha. A channel's value is
// the one-light value exactly (the other lights add 0 to it).
//
// CHANNELS is 1, or 3 for rgb (always one light a pass): the albedo is the vertex colour's
// rgb, lit alike in each channel, with a white highlight.
#if CHANNELS == 3
#define ALBEDO vec3
#else
#define ALBEDO float
#endif
layout(location = 0) in vec3 position;
layout(location = NORMAL_LOC) in vec3 normal;
#ifdef COLOR_0_LOC
layout(location = COLOR_0_LOC) in vec4 color_0;
#endif
layout(location = INST_M_LOC) in mat4 inst_m;

struct DirectionalLight {
    vec3 color;
    float intensity;
    vec3 direction;
};
uniform DirectionalLight directional_lights[LIGHTS_PER_PASS];
uniform vec3 ambient_light;
uniform vec3 cam_pos;
uniform mat4 M;
uniform mat4 V;
uniform mat4 P;

#if CHANNELS == 3
out vec3 frag_radiance;
#elif LIGHTS_PER_PASS == 1
out float frag_radiance;
#else
out vec4 frag_radiance;
#endif

const float SPECULAR = 0.08;  // as mesh.frag
const float SHININESS = 24.0;

ALBEDO radiance(DirectionalLight light, ALBEDO albedo, vec3 n, vec3 v)
{
    vec3 l = -normalize(light.direction);
    float lambert = max(dot(n, l), 0.0);
    float highlight = lambert > 0.0 ? pow(max(dot(n, normalize(l + v)), 0.0), SHININESS) : 0.0;
    return albedo * (ambient_light.r + light.intensity * lambert)
         + SPECULAR * light.intensity * highlight;
}

void main()
{
    mat4 model = M * inst_m;
    vec4 world = model * vec4(position, 1.0);
    gl_Position = P * V * world;
#if CHANNELS == 3
#ifdef COLOR_0_LOC
    vec3 albedo = color_0.rgb;  // rgb reflectance
#else
    vec3 albedo = vec3(0.7);
#endif
#else
#ifdef COLOR_0_LOC
    float albedo = color_0.r;  // grayscale reflectance
#else
    float albedo = 0.7;
#endif
#endif
    vec3 n = normalize(mat3(model) * normal);  // rigid transforms: M is its own normal matrix
    vec3 v = normalize(cam_pos - world.xyz);
#if CHANNELS == 3 || LIGHTS_PER_PASS == 1
    frag_radiance = radiance(directional_lights[0], albedo, n, v);
#else
    frag_radiance = vec4(0.0);
    for (int i = 0; i < LIGHTS_PER_PASS; i++) {
        vec3 c = directional_lights[i].color;
        vec4 channel = vec4(c, 1.0 - c.r - c.g - c.b);
        frag_radiance += channel * radiance(directional_lights[i], albedo, n, v);
    }
#endif
}

#version 330 core
// One directional light plus ambient: Lambert diffuse and a weak Blinn-Phong highlight,
// which is what shows a face's 3D form; written as gamma-encoded gray.
//
// Chairs add solid procedural textures, computed from the object-space position so they need
// no UVs and stick to the object as it turns. The per-vertex material code selects one:
// 0 plain albedo (faces, user meshes: exactly the shading above), 1-3 wood with its grain
// along x, y or z, 4 fabric weave, 5 brushed metal, 6 leather, 7 matte plastic.
//
// CHANNELS (set by the Renderer) is 1, or 3 for rgb: the albedo is then a colour, textures
// scale all three channels alike and the highlight is white.
#if CHANNELS == 3
#define ALBEDO vec3
#else
#define ALBEDO float
#endif
struct DirectionalLight {
    vec3 color;
    float intensity;
    vec3 direction;
};
uniform DirectionalLight directional_lights[1];
uniform vec3 ambient_light;
uniform vec3 cam_pos;

in vec3 frag_position;
in vec3 frag_normal;
in ALBEDO frag_albedo;
in vec3 frag_object;
flat in vec2 frag_material;

out vec4 frag_color;

const float SPECULAR = 0.08;
const float SHININESS = 24.0;

float hash(vec3 p)
{
    p = fract(p * 0.3183099 + 0.1);
    p *= 17.0;
    return fract(p.x * p.y * p.z * (p.x + p.y + p.z));
}

float value_noise(vec3 x)
{
    vec3 i = floor(x);
    vec3 f = fract(x);
    f = f * f * (3.0 - 2.0 * f);
    return mix(mix(mix(hash(i + vec3(0, 0, 0)), hash(i + vec3(1, 0, 0)), f.x),
                   mix(hash(i + vec3(0, 1, 0)), hash(i + vec3(1, 1, 0)), f.x), f.y),
               mix(mix(hash(i + vec3(0, 0, 1)), hash(i + vec3(1, 0, 1)), f.x),
                   mix(hash(i + vec3(0, 1, 1)), hash(i + vec3(1, 1, 1)), f.x), f.y), f.z);
}

// Growth rings around the grain axis, warped by noise: long streaks along the part.
float wood(vec3 p, int axis, float scale)
{
    vec3 q = axis == 0 ? p.yzx : (axis == 1 ? p.zxy : p);  // q.z runs along the grain
    vec2 across = q.xy * scale + vec2(3.7, 1.3);
    float warp = value_noise(vec3(across * 0.7, q.z * scale * 0.08)) * 2.5;
    float rings = fract(length(across) * 1.6 + warp);
    float streak = value_noise(vec3(across * 6.0, q.z * scale * 0.3));
    return 0.72 + 0.22 * smoothstep(0.0, 0.6, rings) * smoothstep(1.0, 0.6, rings)
           + 0.12 * streak;
}

// A plain weave: alternating over/under threads in the two directions across the surface.
float fabric(vec3 p, float scale)
{
    vec3 s = sin(p * scale * 6.2831853);
    float weave = abs(s.x * s.y + s.y * s.z + s.z * s.x);
    return 0.78 + 0.16 * weave + 0.12 * value_noise(p * scale * 0.5);
}

float brushed(vec3 p, float scale)
{
    return 0.85 + 0.15 * value_noise(vec3(p.x * scale * 8.0, p.y * scale * 0.4, p.z * scale * 8.0));
}

float leather(vec3 p, float scale)
{
    float grain = value_noise(p * scale * 3.0) * 0.6 + value_noise(p * scale * 7.0) * 0.4;
    return 0.82 + 0.3 * grain;  // no coarse term: value noise's cells would show as squares
}

void main()
{
    vec3 n = normalize(frag_normal);
    vec3 l = -normalize(directional_lights[0].direction);
    vec3 v = normalize(cam_pos - frag_position);
    ALBEDO albedo = frag_albedo;
    float specular = SPECULAR;
    float shininess = SHININESS;
    int material = int(frag_material.x * 8.0 + 0.5);
    float scale = frag_material.y * 64.0;
    if (material >= 1 && material <= 3) {
        albedo *= wood(frag_object, material - 1, scale);
    } else if (material == 4) {
        albedo *= fabric(frag_object, scale);
        specular = 0.02;
    } else if (material == 5) {
        albedo *= brushed(frag_object, scale);
        specular = 0.45;
        shininess = 48.0;
    } else if (material == 6) {
        albedo *= leather(frag_object, scale);
        specular = 0.18;
        shininess = 16.0;
    } else if (material == 7) {
        specular = 0.15;
    }
    float lambert = max(dot(n, l), 0.0);
    float highlight = lambert > 0.0 ? pow(max(dot(n, normalize(l + v)), 0.0), shininess) : 0.0;
    float intensity = directional_lights[0].intensity;
    ALBEDO radiance = albedo * (ambient_light.r + intensity * lambert)
                    + specular * intensity * highlight;
#if CHANNELS == 3
    frag_color = vec4(pow(clamp(radiance, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
#else
    frag_color = vec4(vec3(pow(clamp(radiance, 0.0, 1.0), 1.0 / 2.2)), 1.0);
#endif
}

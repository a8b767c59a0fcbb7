#version 330 core
// Faces' shader: the same Lambert + weak Blinn-Phong light as mesh.frag's plain albedo
// (material 0), evaluated per vertex. A face's triangles are 1-3 pixels at 150×150, so this
// looks the same as per-pixel lighting (tests/test_renderer.py bounds the difference), and one
// interpolated value instead of eleven halves llvmpipe's per-triangle cost (docs/results.md).
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
uniform DirectionalLight directional_lights[1];
uniform vec3 ambient_light;
uniform vec3 cam_pos;
uniform mat4 M;
uniform mat4 V;
uniform mat4 P;

out float frag_radiance;

const float SPECULAR = 0.08;  // as mesh.frag
const float SHININESS = 24.0;

void main()
{
    mat4 model = M * inst_m;
    vec4 world = model * vec4(position, 1.0);
    gl_Position = P * V * world;
#ifdef COLOR_0_LOC
    float albedo = color_0.r;  // grayscale reflectance
#else
    float albedo = 0.7;
#endif
    vec3 n = normalize(mat3(model) * normal);  // rigid transforms: M is its own normal matrix
    vec3 l = -normalize(directional_lights[0].direction);
    vec3 v = normalize(cam_pos - world.xyz);
    float lambert = max(dot(n, l), 0.0);
    float highlight = lambert > 0.0 ? pow(max(dot(n, normalize(l + v)), 0.0), SHININESS) : 0.0;
    float intensity = directional_lights[0].intensity;
    frag_radiance = albedo * (ambient_light.r + intensity * lambert)
                  + SPECULAR * intensity * highlight;
}

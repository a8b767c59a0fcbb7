#version 330 core
// One directional light plus ambient: Lambert diffuse and a weak Blinn-Phong highlight,
// which is what shows a face's 3D form; written as gamma-encoded gray.
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
in float frag_albedo;

out vec4 frag_color;

const float SPECULAR = 0.08;
const float SHININESS = 24.0;

void main()
{
    vec3 n = normalize(frag_normal);
    vec3 l = -normalize(directional_lights[0].direction);
    vec3 v = normalize(cam_pos - frag_position);
    float lambert = max(dot(n, l), 0.0);
    float highlight = lambert > 0.0 ? pow(max(dot(n, normalize(l + v)), 0.0), SHININESS) : 0.0;
    float intensity = directional_lights[0].intensity;
    float radiance = frag_albedo * (ambient_light.r + intensity * lambert)
                   + SPECULAR * intensity * highlight;
    frag_color = vec4(vec3(pow(clamp(radiance, 0.0, 1.0), 1.0 / 2.2)), 1.0);
}

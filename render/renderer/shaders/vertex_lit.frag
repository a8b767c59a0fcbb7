#version 330 core
// The radiance lit in vertex_lit.vert, written as gamma-encoded gray like mesh.frag: in every
// channel for one light, or one light per channel for four (see vertex_lit.vert).
#if LIGHTS_PER_PASS == 1
in float frag_radiance;
#else
in vec4 frag_radiance;
#endif

out vec4 frag_color;

void main()
{
#if LIGHTS_PER_PASS == 1
    frag_color = vec4(vec3(pow(clamp(frag_radiance, 0.0, 1.0), 1.0 / 2.2)), 1.0);
#else
    frag_color = pow(clamp(frag_radiance, 0.0, 1.0), vec4(1.0 / 2.2));
#endif
}

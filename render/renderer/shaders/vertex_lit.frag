#version 330 core
// The radiance lit in vertex_lit.vert, written as gamma-encoded gray like mesh.frag: in every
// channel for one light, or one light per channel for four (see vertex_lit.vert); for rgb
// (CHANNELS 3) the three channels of one light.
#if CHANNELS == 3
in vec3 frag_radiance;
#elif LIGHTS_PER_PASS == 1
in float frag_radiance;
#else
in vec4 frag_radiance;
#endif

out vec4 frag_color;

void main()
{
#if CHANNELS == 3
    frag_color = vec4(pow(clamp(frag_radiance, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
#elif LIGHTS_PER_PASS == 1
    frag_color = vec4(vec3(pow(clamp(frag_radiance, 0.0, 1.0), 1.0 / 2.2)), 1.0);
#else
    frag_color = pow(clamp(frag_radiance, 0.0, 1.0), vec4(1.0 / 2.2));
#endif
}

#version 330 core
// The radiance lit in vertex_lit.vert, written as gamma-encoded gray like mesh.frag: in every
// channel for one light, or one light per channel of each render target (see
// vertex_lit.vert); for rgb
// (CHANNELS 3) the three channels of one light.
#if CHANNELS == 3
in vec3 frag_radiance;
#elif LIGHTS_PER_PASS == 1
in float frag_radiance;
#else
in vec4 frag_radiance[TARGETS];
#endif

#if CHANNELS == 1 && LIGHTS_PER_PASS > 1
layout(location = 0) out vec4 frag_color[TARGETS];  // one render target per four lights
#else
out vec4 frag_color;
#endif

void main()
{
#if CHANNELS == 3
    frag_color = vec4(pow(clamp(frag_radiance, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
#elif LIGHTS_PER_PASS == 1
    frag_color = vec4(vec3(pow(clamp(frag_radiance, 0.0, 1.0), 1.0 / 2.2)), 1.0);
#else
    for (int t = 0; t < TARGETS; t++) {
        frag_color[t] = pow(clamp(frag_radiance[t], 0.0, 1.0), vec4(1.0 / 2.2));
    }
#endif
}

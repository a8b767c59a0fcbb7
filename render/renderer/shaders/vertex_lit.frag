#version 330 core
// The radiance lit in vertex_lit.vert, written as gamma-encoded gray like mesh.frag.
in float frag_radiance;

out vec4 frag_color;

void main()
{
    frag_color = vec4(vec3(pow(clamp(frag_radiance, 0.0, 1.0), 1.0 / 2.2)), 1.0);
}

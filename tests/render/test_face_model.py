"""The face models: the embedded Basel-style model, the BFM 2009/2017 loaders, the dispatcher."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dcign.render.objects import embedded_face
from dcign.render.objects.basel import load_bfm2009, load_bfm2017
from dcign.render.objects.embedded_face import derive_embedded_model
from dcign.render.objects.embedded_face_data import load_embedded_model
from dcign.render.objects.face_loader import load_face_model
from dcign.render.objects.face_model import MorphableModel
from dcign.shared.errors import ModelFileError


@pytest.fixture(scope="module")
def model() -> MorphableModel:
    return load_embedded_model()


def _parts(model: MorphableModel) -> list[np.ndarray]:
    """Vertex indices of each connected part (head, eyeballs), largest first."""
    t = model.triangles
    edges = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                       shape=(model.n_vertices,) * 2)
    _, labels = connected_components(graph, directed=False)
    parts = [np.flatnonzero(labels == k) for k in np.unique(labels)]
    return sorted(parts, key=len, reverse=True)


def _signed_volume(vertices: np.ndarray, triangles: np.ndarray) -> float:
    a, b, c = (vertices[triangles[:, i]].astype(np.float64) for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _eye_centres(model: MorphableModel, vertices: np.ndarray) -> np.ndarray:
    head, eye_a, eye_b = _parts(model)[:3]
    centres = np.array([vertices[eye_a].mean(0), vertices[eye_b].mean(0)])
    return centres[np.argsort(centres[:, 0])]


def _component(model: MorphableModel, name: str, sigmas: float) -> np.ndarray:
    shape = np.zeros(model.n_shape, np.float32)
    shape[embedded_face.component_names.index(name)] = sigmas
    return model.instance(shape, np.zeros(model.n_albedo, np.float32))[0]


# --- the embedded model: size and structure -------------------------------------------------


def test_embedded_model_has_a_renderable_number_of_vertices(model):
    assert 5_000 <= model.n_vertices <= 30_000


def test_embedded_model_has_at_least_50_shape_and_30_albedo_components(model):
    assert model.n_shape >= 50
    assert model.n_albedo >= 30
    assert model.shape_basis.shape == (model.n_shape, model.n_vertices, 3)
    assert model.albedo_basis.shape == (model.n_albedo, model.n_vertices, 3)


def test_embedded_model_arrays_have_the_interface_dtypes(model):
    for name in ("shape_mean", "shape_basis", "shape_std", "albedo_mean", "albedo_basis",
                 "albedo_std"):
        assert getattr(model, name).dtype == np.float32, name
    assert model.triangles.dtype == np.int32


def test_embedded_bases_are_orthonormal_with_positive_stds(model):
    for basis, std in ((model.shape_basis, model.shape_std),
                       (model.albedo_basis, model.albedo_std)):
        flat = basis.reshape(basis.shape[0], -1).astype(np.float64)
        np.testing.assert_allclose(flat @ flat.T, np.eye(len(flat)), atol=1e-4)
        assert np.all(std > 0) and np.all(np.isfinite(std))


def test_every_component_has_a_name(model):
    assert len(embedded_face.component_names) == model.n_shape
    assert len(set(embedded_face.component_names)) == model.n_shape
    assert len(embedded_face.albedo_component_names) == model.n_albedo


def test_triangles_are_valid_and_not_degenerate(model):
    t = model.triangles
    assert t.min() >= 0 and t.max() < model.n_vertices
    assert np.all((t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2]))
    v = model.shape_mean.astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]), axis=1)
    assert area.min() > 1e-9 * area.mean()


def test_mesh_is_closed_and_consistently_wound(model):
    # Every directed edge occurs once and its reverse once: no holes, no flipped triangles.
    t = model.triangles.astype(np.int64)
    edges = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    keys = edges[:, 0] * model.n_vertices + edges[:, 1]
    reverse = edges[:, 1] * model.n_vertices + edges[:, 0]
    assert len(np.unique(keys)) == len(keys)
    assert np.array_equal(np.sort(keys), np.sort(reverse))


def test_head_and_both_eyeballs_are_wound_counter_clockwise_from_outside(model):
    parts = _parts(model)
    assert len(parts) == 3  # the head and two eyeballs
    for part in parts:
        inside = np.isin(model.triangles, part).all(axis=1)
        assert _signed_volume(model.shape_mean, model.triangles[inside]) > 0


def test_mean_face_looks_towards_plus_z_with_y_up(model):
    v = model.shape_mean
    nose_tip = v[np.argmax(v[:, 2])]
    left_eye, right_eye = _eye_centres(model, v)
    assert abs(nose_tip[0]) < 0.05 * np.ptp(v[:, 0])  # on the midline
    assert nose_tip[1] < left_eye[1] and nose_tip[2] > left_eye[2]  # below and before the eyes
    assert v[:, 1].argmax() not in _parts(model)[1]  # the skull, not an eye, is on top
    assert abs(left_eye[1] - right_eye[1]) < 1e-3 and left_eye[0] == pytest.approx(-right_eye[0])


def test_eyeballs_carry_a_dark_pupil_in_a_light_sclera(model):
    for eye in _parts(model)[1:]:
        brightness = model.albedo_mean[eye].mean(axis=1)
        front = eye[np.argmax(model.shape_mean[eye, 2])]
        assert model.albedo_mean[front].mean() < 0.1
        assert brightness.max() > 0.8


def test_mean_albedo_is_skin_coloured(model):
    head = _parts(model)[0]
    skin = np.median(model.albedo_mean[head], axis=0)
    assert skin[0] > skin[1] > skin[2]  # red > green > blue
    assert 0.4 < skin.mean() < 0.85
    assert model.albedo_mean.min() >= 0 and model.albedo_mean.max() <= 1


# --- the embedded model: determinism and identities -----------------------------------------


def test_the_shipped_model_is_read_once(model):
    assert load_embedded_model() is model


def test_deriving_the_model_twice_on_one_machine_gives_the_same_bits():
    assert derive_embedded_model().fingerprint() == derive_embedded_model().fingerprint()


def test_identities_differ_but_stay_plausible(model):
    rng = np.random.default_rng(0)
    size = np.ptp(model.shape_mean, axis=0).max()
    faces = []
    for _ in range(6):
        shape, albedo = model.sample_coefficients(rng)
        vertices, colour = model.instance(shape, albedo)
        assert np.all(np.isfinite(vertices))
        assert np.abs(vertices - model.shape_mean).max() < 0.12 * size
        assert colour.min() >= 0 and colour.max() <= 1
        faces.append(vertices)
    for a, b in zip(faces, faces[1:], strict=False):
        assert np.abs(a - b).max() > 0.01 * size


@pytest.mark.parametrize("sign", [-3.0, 3.0])
def test_three_std_along_every_component_keeps_the_head_unfolded(model, sign):
    t = model.triangles
    mean = model.shape_mean
    size = np.ptp(mean, axis=0).max()

    def normals(v):
        return np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])

    reference = normals(mean)
    for k in range(model.n_shape):
        vertices = mean + sign * model.shape_std[k] * model.shape_basis[k]  # one component
        assert np.abs(vertices - mean).max() < 0.1 * size, embedded_face.component_names[k]
        flipped = np.einsum("ij,ij->i", normals(vertices), reference) <= 0
        assert not flipped.any(), embedded_face.component_names[k]


def test_all_components_at_three_std_at_once_stay_a_head(model):
    rng = np.random.default_rng(1)
    size = np.ptp(model.shape_mean, axis=0).max()
    for _ in range(3):
        shape = (3.0 * rng.choice([-1.0, 1.0], model.n_shape)).astype(np.float32)
        albedo = (3.0 * rng.choice([-1.0, 1.0], model.n_albedo)).astype(np.float32)
        vertices, colour = model.instance(shape, albedo)
        assert np.abs(vertices - model.shape_mean).max() < 0.15 * size
        assert _signed_volume(vertices, model.triangles) == pytest.approx(
            _signed_volume(model.shape_mean, model.triangles), rel=0.3)
        assert colour.min() >= 0 and colour.max() <= 1


def test_eye_spacing_component_moves_the_eyes_apart(model):
    def spacing(v):
        left, right = _eye_centres(model, v)
        return right[0] - left[0]

    assert spacing(_component(model, "eye_spacing", 2)) > spacing(model.shape_mean) + 0.1
    assert spacing(_component(model, "eye_spacing", -2)) < spacing(model.shape_mean) - 0.1


def test_face_width_component_widens_the_face(model):
    head = _parts(model)[0]
    front = head[model.shape_mean[head, 2] > 4.0]

    def width(v):
        return np.ptp(v[front, 0])

    assert width(_component(model, "face_width", 2)) > width(model.shape_mean) * 1.02


def test_face_length_component_lowers_the_chin(model):
    assert _component(model, "face_length", 2)[:, 1].min() < model.shape_mean[:, 1].min() - 0.3


def test_nose_projection_component_moves_the_nose_tip_forward(model):
    assert _component(model, "nose_projection", 2)[:, 2].max() > model.shape_mean[:, 2].max() + 0.2


def test_skin_tone_component_darkens_the_skin(model):
    albedo = np.zeros(model.n_albedo, np.float32)
    albedo[embedded_face.albedo_component_names.index("skin_tone")] = 2
    _, dark = model.instance(np.zeros(model.n_shape, np.float32), albedo)
    head = _parts(model)[0]
    assert dark[head].mean() < 0.85 * model.albedo_mean[head].mean()


# --- real Basel models, written here in their published layouts -----------------------------

# An octahedron: a closed mesh whose triangles are counter-clockwise from outside.
_POINTS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
_CCW = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4],
                 [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])


def _orthonormal_columns(rng, rows, cols):
    q, _ = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q


@pytest.fixture
def bfm2009_arrays():
    rng = np.random.default_rng(2009)
    n = len(_POINTS)
    return {
        "shapeMU": (_POINTS * 1e4).reshape(-1, 1).astype(np.float32),
        "shapePC": _orthonormal_columns(rng, 3 * n, 4).astype(np.float32),
        "shapeEV": np.array([[900.0], [500.0], [200.0], [50.0]], np.float32),
        "texMU": rng.uniform(60, 200, (3 * n, 1)).astype(np.float32),
        "texPC": _orthonormal_columns(rng, 3 * n, 3).astype(np.float32),
        "texEV": np.array([[40.0], [20.0], [5.0]], np.float32),
        # One-based and clockwise from outside, as BFM 2009 stores them.
        "tl": (_CCW[:, [0, 2, 1]] + 1).astype(np.float64),
    }


@pytest.fixture
def bfm2009_file(tmp_path, bfm2009_arrays):
    path = tmp_path / "01_MorphableModel.mat"
    scipy.io.savemat(path, bfm2009_arrays)
    return path


def test_bfm2009_loader_reproduces_the_faces_of_the_file(bfm2009_file, bfm2009_arrays):
    a = bfm2009_arrays
    model = load_bfm2009(bfm2009_file)
    shape = np.array([1.0, -0.5, 2.0, 0.0], np.float32)
    albedo = np.array([0.5, -1.0, 2.0], np.float32)
    vertices, colour = model.instance(shape, albedo)
    expected_v = (a["shapeMU"][:, 0] + a["shapePC"] @ (shape * a["shapeEV"][:, 0])).reshape(-1, 3)
    expected_c = (a["texMU"][:, 0] + a["texPC"] @ (albedo * a["texEV"][:, 0])).reshape(-1, 3)
    np.testing.assert_allclose(vertices, expected_v, rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(colour, np.clip(expected_c / 255, 0, 1), atol=1e-5)
    np.testing.assert_allclose(model.shape_std, a["shapeEV"][:, 0])


def test_bfm2009_triangles_become_zero_based_and_counter_clockwise(bfm2009_file):
    model = load_bfm2009(bfm2009_file)
    assert model.triangles.dtype == np.int32
    assert {tuple(np.roll(t, -np.argmin(t))) for t in model.triangles} == {
        tuple(np.roll(t, -np.argmin(t))) for t in _CCW}
    assert _signed_volume(model.shape_mean, model.triangles) > 0


@pytest.fixture
def bfm2017_arrays():
    rng = np.random.default_rng(2017)
    n = len(_POINTS)
    return {
        "shape/model/mean": (_POINTS * 50).reshape(-1).astype(np.float32),
        "shape/model/pcaBasis": _orthonormal_columns(rng, 3 * n, 4).astype(np.float32),
        "shape/model/pcaVariance": np.array([16.0, 9.0, 4.0, 1.0], np.float32),
        "shape/representer/points": (_POINTS * 50).T.astype(np.float32),
        "shape/representer/cells": _CCW.T.astype(np.uint32),
        "color/model/mean": rng.uniform(0.3, 0.7, 3 * n).astype(np.float32),
        "color/model/pcaBasis": _orthonormal_columns(rng, 3 * n, 3).astype(np.float32),
        "color/model/pcaVariance": np.array([0.04, 0.01, 0.0025], np.float32),
    }


def _write_h5(path, arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def test_bfm2017_loader_takes_square_roots_of_the_variances(tmp_path, bfm2017_arrays):
    a = bfm2017_arrays
    model = load_bfm2017(_write_h5(tmp_path / "model2017-1_bfm_nomouth.h5", a))
    np.testing.assert_allclose(model.shape_std, [4.0, 3.0, 2.0, 1.0])
    shape = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    albedo = np.array([1.0, 0.5, -1.0], np.float32)
    vertices, colour = model.instance(shape, albedo)
    std = np.sqrt(a["shape/model/pcaVariance"])
    expected_v = a["shape/model/mean"] + a["shape/model/pcaBasis"] @ (shape * std)
    cstd = np.sqrt(a["color/model/pcaVariance"])
    expected_c = a["color/model/mean"] + a["color/model/pcaBasis"] @ (albedo * cstd)
    np.testing.assert_allclose(vertices, expected_v.reshape(-1, 3), atol=1e-4)
    np.testing.assert_allclose(colour, np.clip(expected_c, 0, 1).reshape(-1, 3), atol=1e-5)
    np.testing.assert_array_equal(model.triangles, _CCW)
    assert _signed_volume(model.shape_mean, model.triangles) > 0


def test_bfm2017_basis_already_scaled_by_std_gives_the_same_faces(tmp_path, bfm2017_arrays):
    plain = load_bfm2017(_write_h5(tmp_path / "plain.h5", bfm2017_arrays))
    scaled_arrays = dict(bfm2017_arrays)
    for part in ("shape", "color"):
        std = np.sqrt(bfm2017_arrays[f"{part}/model/pcaVariance"])
        scaled_arrays[f"{part}/model/pcaBasis"] = bfm2017_arrays[f"{part}/model/pcaBasis"] * std
    scaled = load_bfm2017(_write_h5(tmp_path / "scaled.h5", scaled_arrays))
    coefficients = np.array([1.0, -1.0, 2.0, 0.5], np.float32), np.ones(3, np.float32)
    for a, b in zip(plain.instance(*coefficients), scaled.instance(*coefficients), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_bfm2017_basis_of_unexplained_scale_is_refused(tmp_path, bfm2017_arrays):
    arrays = dict(bfm2017_arrays)
    arrays["shape/model/pcaBasis"] = arrays["shape/model/pcaBasis"] * 7.0
    with pytest.raises(ModelFileError, match="pcaBasis"):
        load_bfm2017(_write_h5(tmp_path / "odd.h5", arrays))


# --- the dispatcher and unreadable files -----------------------------------------------------


def test_no_path_gives_the_embedded_model():
    assert load_face_model(None) is load_embedded_model()


def test_dispatcher_picks_the_loader_by_extension(tmp_path, bfm2009_file, bfm2017_arrays):
    assert load_face_model(bfm2009_file).name == "bfm2009"
    assert load_face_model(str(bfm2009_file)).name == "bfm2009"
    for suffix in (".h5", ".hdf5"):
        path = _write_h5(tmp_path / f"model{suffix}", bfm2017_arrays)
        assert load_face_model(path).name == "bfm2017"


def _assert_one_line_error_naming(path, call):
    with pytest.raises(ModelFileError) as info:
        call(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.mark.parametrize("name", ["missing.mat", "missing.h5", "missing.hdf5"])
def test_missing_file_is_a_model_file_error(tmp_path, name):
    assert "no such file" in _assert_one_line_error_naming(tmp_path / name, load_face_model)


@pytest.mark.parametrize("name", ["face.obj", "face", "face.npz"])
def test_unknown_extension_is_a_model_file_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not a model")
    _assert_one_line_error_naming(path, load_face_model)


@pytest.mark.parametrize("suffix", [".mat", ".h5"])
def test_a_text_file_with_a_model_extension_is_a_model_file_error(tmp_path, suffix):
    path = tmp_path / f"notes{suffix}"
    path.write_text("these are not the arrays you are looking for\n")
    _assert_one_line_error_naming(path, load_face_model)


def test_truncated_mat_is_a_model_file_error(bfm2009_file):
    data = bfm2009_file.read_bytes()
    bfm2009_file.write_bytes(data[: len(data) // 2])
    _assert_one_line_error_naming(bfm2009_file, load_face_model)


def test_truncated_h5_is_a_model_file_error(tmp_path, bfm2017_arrays):
    path = _write_h5(tmp_path / "model.h5", bfm2017_arrays)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_one_line_error_naming(path, load_face_model)


def test_mat_missing_a_key_is_a_model_file_error_naming_it(tmp_path, bfm2009_arrays):
    path = tmp_path / "partial.mat"
    scipy.io.savemat(path, {k: v for k, v in bfm2009_arrays.items() if k != "texPC"})
    assert "texPC" in _assert_one_line_error_naming(path, load_face_model)


def test_h5_missing_a_key_is_a_model_file_error_naming_it(tmp_path, bfm2017_arrays):
    arrays = {k: v for k, v in bfm2017_arrays.items() if not k.startswith("color/")}
    path = _write_h5(tmp_path / "shape_only.h5", arrays)
    assert "color/model/mean" in _assert_one_line_error_naming(path, load_face_model)


def test_mat_with_inconsistent_shapes_is_a_model_file_error(tmp_path, bfm2009_arrays):
    arrays = dict(bfm2009_arrays, shapePC=bfm2009_arrays["shapePC"][:-3])
    path = tmp_path / "inconsistent.mat"
    scipy.io.savemat(path, arrays)
    assert "shapePC" in _assert_one_line_error_naming(path, load_face_model)


def test_mat_with_zero_based_triangles_is_a_model_file_error(tmp_path, bfm2009_arrays):
    arrays = dict(bfm2009_arrays, tl=bfm2009_arrays["tl"] - 1)
    path = tmp_path / "zero_based.mat"
    scipy.io.savemat(path, arrays)
    assert "out of range" in _assert_one_line_error_naming(path, load_face_model)


def test_h5_with_inconsistent_shapes_is_a_model_file_error(tmp_path, bfm2017_arrays):
    arrays = dict(bfm2017_arrays)
    arrays["color/model/pcaVariance"] = arrays["color/model/pcaVariance"][:2]
    path = _write_h5(tmp_path / "inconsistent.h5", arrays)
    assert "pcaVariance" in _assert_one_line_error_naming(path, load_face_model)

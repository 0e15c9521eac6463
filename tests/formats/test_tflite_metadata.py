"""The stand-in for MediaPipe's compiled parser-version helper follows metadata_version.cc's table."""

from __future__ import annotations

import pytest


def _packed(build) -> bytes:
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    md = fb.ModelMetadataT()
    sub = fb.SubGraphMetadataT()
    tensor = fb.TensorMetadataT()
    sub.inputTensorMetadata, sub.outputTensorMetadata = [tensor], [fb.TensorMetadataT()]
    md.subgraphMetadata = [sub]
    build(fb, md, sub, tensor)
    b = flatbuffers.Builder(0)
    b.Finish(md.Pack(b), b"M001")
    return bytes(b.Output())


def _file(fb, type_, version=None):
    f = fb.AssociatedFileT()
    f.name, f.type, f.version = "labels.txt", type_, version
    return f


def _unit(fb, options_type):
    u = fb.ProcessUnitT()
    u.optionsType = options_type
    return u


# (what the metadata uses, the minimum parser version metadata_version.cc assigns to it)
CASES = [
    (lambda fb, md, sub, t: None, "1.0.0"),
    (lambda fb, md, sub, t: setattr(t, "associatedFiles", [_file(fb, fb.AssociatedFileType.TENSOR_AXIS_LABELS)]), "1.0.0"),
    (lambda fb, md, sub, t: setattr(t, "processUnits", [_unit(fb, fb.ProcessUnitOptions.NormalizationOptions)]), "1.0.0"),
    (lambda fb, md, sub, t: setattr(t, "associatedFiles", [_file(fb, fb.AssociatedFileType.VOCABULARY)]), "1.0.1"),
    (lambda fb, md, sub, t: setattr(sub, "inputProcessUnits", []), "1.1.0"),
    (lambda fb, md, sub, t: setattr(t, "processUnits", [_unit(fb, fb.ProcessUnitOptions.BertTokenizerOptions)]), "1.1.0"),
    (lambda fb, md, sub, t: setattr(sub, "outputTensorGroups", []), "1.2.0"),
    (lambda fb, md, sub, t: setattr(t, "processUnits", [_unit(fb, fb.ProcessUnitOptions.RegexTokenizerOptions)]), "1.2.1"),
    (lambda fb, md, sub, t: setattr(md, "associatedFiles", [_file(fb, fb.AssociatedFileType.SCANN_INDEX_FILE)]), "1.4.0"),
    (lambda fb, md, sub, t: setattr(t, "associatedFiles", [_file(fb, fb.AssociatedFileType.DESCRIPTIONS, "v2")]), "1.4.1"),
    (lambda fb, md, sub, t: setattr(sub, "customMetadata", []), "1.5.0"),
]


@pytest.mark.parametrize("build,expected", CASES)
def test_min_parser_version_follows_the_schema_table(build, expected):
    from resnet_tl.formats.tflite_metadata import min_parser_version

    assert min_parser_version(_packed(build)) == expected

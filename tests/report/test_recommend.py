"""The recommended artifact: the fastest student within the accuracy budget, per setting."""

from edgekd.report.recommend import recommend, recommended_for


def entry(name, accuracy, p50, role="student", target="local", threads=1):
    fmt = name.split("-")[1] if "-" in name else "pytorch"
    return {"name": name, "role": role, "format": fmt, "precision": "fp32", "target": target,
            "threads": threads, "batch_size": 1, "seq_len": 128, "status": "ok",
            "accuracy": accuracy, "latency_ms": {"p50": p50, "n": 10}}


def report(*entries):
    return {"entries": list(entries)}


TEACHER = entry("teacher-pytorch-fp32", 0.970, 40.0, role="teacher")


def test_fastest_within_one_point_of_the_teacher_is_recommended():
    r = report(TEACHER, entry("student-onnx-fp32", 0.975, 10.0),
               entry("student-onnx-int8", 0.962, 3.0),       # 0.8 points below: within
               entry("student-tflite-int8", 0.955, 2.0))     # 1.5 points below: outside
    (pick,) = recommend(r, budget=0.01)
    assert pick["entry"]["name"] == "student-onnx-int8" and pick["within_budget"]
    assert "fastest of 2" in pick["why"]
    # a wider budget admits the faster, less accurate one
    assert recommended_for(r, None, budget=0.02)["name"] == "student-tflite-int8"


def test_without_a_student_in_budget_the_most_accurate_is_named_and_why():
    r = report(TEACHER, entry("student-onnx-fp32", 0.90, 10.0), entry("student-onnx-int8", 0.85, 3.0))
    (pick,) = recommend(r, budget=0.01)
    assert pick["entry"]["name"] == "student-onnx-fp32" and not pick["within_budget"]
    assert "no student artifact is within" in pick["why"]


def test_one_recommendation_per_target_setting():
    pi = dict(target="pi5")
    r = report(TEACHER, entry("student-onnx-int8", 0.965, 3.0), entry("student-tflite-int8", 0.965, 4.0),
               entry("teacher-pytorch-fp32", 0.970, 400.0, role="teacher", **pi),
               entry("student-onnx-int8", 0.965, 30.0, **pi), entry("student-tflite-int8", 0.965, 20.0, **pi))
    picks = {p["setting"][0]: p["entry"]["name"] for p in recommend(r)}
    assert picks == {"local": "student-onnx-int8", "pi5": "student-tflite-int8"}

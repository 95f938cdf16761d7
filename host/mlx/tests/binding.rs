//! Tests of the binding against values computed by hand or by a second route.

use std::collections::BTreeMap;

use mlx::fast::{self, Mask};
use mlx::{Array, Dtype, nn, quantize, random};

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn matmul_matches_hand_computed_product() {
    let a = Array::from_f32(&[1., 2., 3., 4., 5., 6.], &[2, 3]).unwrap();
    let b = Array::from_f32(&[7., 8., 9., 10., 11., 12.], &[3, 2]).unwrap();
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), vec![2, 2]);
    // [1 2 3]·[7 9 11] = 58, ·[8 10 12] = 64; [4 5 6]·... = 139, 154
    assert_eq!(c.to_vec::<f32>().unwrap(), vec![58., 64., 139., 154.]);
}

#[test]
fn shape_mismatch_is_an_error_with_mlx_message() {
    let a = Array::zeros(&[2, 3], Dtype::F32).unwrap();
    let b = Array::zeros(&[4, 5], Dtype::F32).unwrap();
    let err = a.matmul(&b).unwrap_err();
    assert_eq!(err.op, "matmul");
    let msg = err.to_string();
    assert!(msg.contains("matmul"), "{msg}");
    // MLX names the offending shapes.
    assert!(msg.contains("(2,3)") && msg.contains("(4,5)"), "{msg}");
}

#[test]
fn wrong_data_length_is_rejected_before_mlx() {
    let err = Array::from_f32(&[1., 2., 3.], &[2, 2]).unwrap_err();
    assert!(err.to_string().contains("do not fill shape"), "{err}");
}

#[test]
fn quantize_dequantize_error_stays_within_the_derived_bound() {
    for (group, bits) in [(32, 4), (64, 4), (64, 8), (128, 3), (64, 6), (64, 2)] {
        let key = random::key(7).unwrap();
        let w = random::normal(&[16, 256], Dtype::F32, 0.0, 1.0, &key).unwrap();
        let q = quantize(&w, group, bits).unwrap();
        assert_eq!(q.weight.dtype(), Dtype::U32);
        assert_eq!(q.weight.shape(), vec![16, 256 * bits / 32]);
        assert_eq!(q.scales.shape(), vec![16, 256 / group]);
        assert_eq!(q.logical_shape(), vec![16, 256]);
        let back = q.dequantize(Dtype::F32).unwrap().to_vec::<f32>().unwrap();
        let orig = w.to_vec::<f32>().unwrap();
        let scales = q.scales.to_vec::<f32>().unwrap();
        let groups_per_row = 256 / group as usize;
        // MLX snaps the scale so that zero is exactly representable, so a
        // group's codes span (2^bits - 1)·|scale|, which can fall short of the
        // group's range by a little. The error bound is therefore half a step
        // plus whatever part of the range the codes do not cover.
        for (gi, chunk) in orig.chunks(group as usize).enumerate() {
            let step = scales[gi].abs();
            let lo = chunk.iter().cloned().fold(f32::INFINITY, f32::min);
            let hi = chunk.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let uncovered = ((hi - lo) - step * ((1 << bits) - 1) as f32).max(0.0);
            let bound = step * 0.5 + uncovered + 1e-5;
            // The ideal step for this group, and the snapped one, differ by
            // less than the step itself: the bound stays on the order of one step.
            assert!(
                bound <= 1.5 * (hi - lo) / ((1 << bits) - 1) as f32 + 1e-5,
                "bound {bound} too loose"
            );
            for (j, x) in chunk.iter().enumerate() {
                let y = back[gi * group as usize + j];
                assert!(
                    (x - y).abs() <= bound,
                    "group {group} bits {bits}: {x} vs {y}, bound {bound}"
                );
            }
        }
        assert_eq!(scales.len(), 16 * groups_per_row);
    }
}

#[test]
fn quantized_matmul_equals_dequantize_then_matmul() {
    let key = random::key(3).unwrap();
    let keys = random::split(&key, 2).unwrap();
    let w = random::normal(&[64, 128], Dtype::F32, 0.0, 1.0, &keys[0]).unwrap();
    let x = random::normal(&[5, 128], Dtype::F32, 0.0, 1.0, &keys[1]).unwrap();
    for bits in [3, 4, 8] {
        let q = quantize(&w, 64, bits).unwrap();
        let fused = q.matmul_t(&x).unwrap().to_vec::<f32>().unwrap();
        let reference = x
            .matmul(&q.dequantize(Dtype::F32).unwrap().t().unwrap())
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert!(close(&fused, &reference, 1e-3), "bits {bits}");
    }
}

#[test]
fn safetensors_round_trip_keeps_values_and_dtypes() {
    let dir = std::env::temp_dir().join(format!("mlx-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.safetensors");
    let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 3.0).collect();
    let base = Array::from_f32(&values, &[2, 3, 4]).unwrap();
    let f32a = base.clone();
    let f16a = base.astype(Dtype::F16).unwrap();
    let bf16a = base.astype(Dtype::BF16).unwrap();
    let ints = Array::from_u32(&[1, 2, 3], &[3]).unwrap();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "mlx".to_string());
    mlx::io::save_safetensors(
        &path,
        [
            ("f32", &f32a),
            ("f16", &f16a),
            ("bf16", &bf16a),
            ("u32", &ints),
        ],
        &meta,
    )
    .unwrap();
    let loaded = mlx::io::load_safetensors(&path).unwrap();
    assert_eq!(
        loaded.metadata.get("format").map(String::as_str),
        Some("mlx")
    );
    for (name, dtype) in [
        ("f32", Dtype::F32),
        ("f16", Dtype::F16),
        ("bf16", Dtype::BF16),
    ] {
        let t = &loaded.tensors[name];
        assert_eq!(t.dtype(), dtype, "{name}");
        assert_eq!(t.shape(), vec![2, 3, 4]);
        // These values are exactly representable in all three formats.
        assert_eq!(t.to_f32_vec().unwrap(), values, "{name}");
    }
    assert_eq!(
        loaded.tensors["u32"].to_vec::<u32>().unwrap(),
        vec![1, 2, 3]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loading_a_missing_file_names_it() {
    let err =
        mlx::io::load_safetensors(std::path::Path::new("/nonexistent/x.safetensors")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/x.safetensors"),
        "{err}"
    );
}

#[test]
fn arrays_are_freed() {
    // Warm up the allocator, then check that 10,000 evaluated temporaries
    // leave active memory where it was.
    let x = Array::ones(&[64, 64], Dtype::F32).unwrap();
    x.mul_scalar(2.0).unwrap().eval().unwrap();
    let before = mlx::memory_stats().active;
    for i in 0..10_000 {
        let y = x.add_scalar(i as f32).unwrap();
        y.eval().unwrap();
    }
    let after = mlx::memory_stats().active;
    assert!(
        after <= before + 64 * 64 * 4,
        "active memory grew from {before} to {after}"
    );
}

#[test]
fn reductions_softmax_and_indexing() {
    let a = Array::from_f32(&[1., 2., 3., 4., 5., 6.], &[2, 3]).unwrap();
    assert_eq!(
        a.sum(&[1], false).unwrap().to_vec::<f32>().unwrap(),
        vec![6., 15.]
    );
    assert_eq!(a.max(&[], false).unwrap().item::<f32>().unwrap(), 6.);
    assert_eq!(
        a.argmax(1, false).unwrap().to_vec::<u32>().unwrap(),
        vec![2, 2]
    );
    let s = a.softmax(&[1], true).unwrap().to_vec::<f32>().unwrap();
    let e = [1f32.exp(), 2f32.exp(), 3f32.exp()];
    let z: f32 = e.iter().sum();
    assert!(close(&s[..3], &[e[0] / z, e[1] / z, e[2] / z], 1e-6));
    let idx = Array::from_i32(&[1, 0], &[2]).unwrap();
    assert_eq!(
        a.take(&idx, 0).unwrap().to_vec::<f32>().unwrap(),
        vec![4., 5., 6., 1., 2., 3.]
    );
    let t = a.t().unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![1., 4., 2., 5., 3., 6.]);
    let sl = a.slice(&[0, 1], &[2, 3]).unwrap();
    assert_eq!(sl.to_vec::<f32>().unwrap(), vec![2., 3., 5., 6.]);
    let upd = a
        .slice_update(
            &Array::zeros(&[1, 2], Dtype::F32).unwrap(),
            &[1, 0],
            &[2, 2],
        )
        .unwrap();
    assert_eq!(upd.to_vec::<f32>().unwrap(), vec![1., 2., 3., 0., 0., 6.]);
    let cat = Array::concatenate(&[&a, &a], 0).unwrap();
    assert_eq!(cat.shape(), vec![4, 3]);
}

#[test]
fn norms_rope_and_attention_match_their_formulas() {
    let x = Array::from_f32(&[1., 2., 3., 4.], &[1, 4]).unwrap();
    let w = Array::from_f32(&[1., 1., 2., 2.], &[4]).unwrap();
    let y = fast::rms_norm(&x, &w, 1e-6)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let rms = ((1. + 4. + 9. + 16.) / 4.0f32 + 1e-6).sqrt();
    assert!(close(&y, &[1. / rms, 2. / rms, 6. / rms, 8. / rms], 1e-5));

    let b = Array::from_f32(&[0.5, 0.5, 0.5, 0.5], &[4]).unwrap();
    let ln = fast::layer_norm(&x, &w, &b, 1e-6)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let sd = (1.25f32 + 1e-6).sqrt();
    let expect: Vec<f32> = [1., 2., 3., 4.]
        .iter()
        .zip([1., 1., 2., 2.])
        .map(|(v, g): (&f32, f32)| (v - 2.5) / sd * g + 0.5)
        .collect();
    assert!(close(&ln, &expect, 1e-5));

    // rotate-half RoPE at position 1 with base b: pair (d, d+2) rotates by 1/b^(d/2)... for dims=4:
    // freq_j = base^(-2j/4), j = 0, 1.
    let q = Array::from_f32(&[1., 2., 3., 4.], &[1, 1, 1, 4]).unwrap();
    let r = fast::rope(&q, 4, false, 100.0, 1.0, 1)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let (f0, f1) = (1.0f32, 100f32.powf(-0.5));
    let expect = [
        1. * f0.cos() - 3. * f0.sin(),
        2. * f1.cos() - 4. * f1.sin(),
        3. * f0.cos() + 1. * f0.sin(),
        4. * f1.cos() + 2. * f1.sin(),
    ];
    assert!(close(&r, &expect, 1e-5), "{r:?} vs {expect:?}");

    // Attention with one key attends fully to it; causal masking of two.
    let k = Array::from_f32(&[1., 0., 0., 1.], &[1, 1, 2, 2]).unwrap();
    let v = Array::from_f32(&[10., 20., 30., 40.], &[1, 1, 2, 2]).unwrap();
    let qq = Array::from_f32(&[5., 0., 5., 0.], &[1, 1, 2, 2]).unwrap();
    let o = fast::scaled_dot_product_attention(&qq, &k, &v, 1.0, Mask::Causal)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let p = 5f32.exp() / (5f32.exp() + 1.0);
    assert!(close(&o[..2], &[10., 20.], 1e-4));
    assert!(
        close(
            &o[2..],
            &[10. * p + 30. * (1. - p), 20. * p + 40. * (1. - p)],
            1e-3
        ),
        "{o:?}"
    );
}

#[test]
fn gelu_variants_follow_their_definitions() {
    let xs = [-2.0f32, -0.5, 0.0, 0.7, 3.0];
    let x = Array::from_f32(&xs, &[5]).unwrap();
    // Exact GELU is x·Φ(x); Φ from standard normal tables.
    let phi = [0.022_750_13f32, 0.308_537_5, 0.5, 0.758_036_3, 0.998_650_1];
    let exact = nn::gelu(&x).unwrap().to_vec::<f32>().unwrap();
    let tanh = nn::gelu_tanh(&x).unwrap().to_vec::<f32>().unwrap();
    for (i, &v) in xs.iter().enumerate() {
        assert!(
            (exact[i] - v * phi[i]).abs() < 1e-5,
            "gelu({v}) = {}",
            exact[i]
        );
        let t = 0.5 * v * (1.0 + (0.797_884_6 * (v + 0.044715 * v * v * v)).tanh());
        assert!((tanh[i] - t).abs() < 1e-5, "gelu_tanh({v}) = {}", tanh[i]);
    }
}

#[test]
fn random_is_reproducible_from_the_seed() {
    let a = random::normal(&[8], Dtype::F32, 0.0, 1.0, &random::key(42).unwrap()).unwrap();
    let b = random::normal(&[8], Dtype::F32, 0.0, 1.0, &random::key(42).unwrap()).unwrap();
    let c = random::normal(&[8], Dtype::F32, 0.0, 1.0, &random::key(43).unwrap()).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    assert_ne!(a.to_vec::<f32>().unwrap(), c.to_vec::<f32>().unwrap());
}

#[test]
fn version_and_device_are_reported() {
    mlx::check_runtime_version().unwrap();
    assert_eq!(mlx::version(), "0.32.4");
    assert!(mlx::is_available(mlx::Device::Cpu));
    let info = mlx::device_info_json(mlx::Device::Cpu).unwrap();
    assert!(info.starts_with('{') && info.ends_with('}'), "{info}");
}

#[test]
fn custom_kernels_fail_cleanly_without_a_gpu() {
    if mlx::runtime_backend() != "cpu" {
        return; // exercised by the GPU benchmark on a CUDA machine
    }
    let spec = mlx::kernel::KernelSpec {
        name: "copy",
        inputs: &["inp"],
        outputs: &["out"],
        source: "uint i = threadIdx.x; out[i] = inp[i];",
        header: "",
        ensure_row_contiguous: true,
    };
    let result = mlx::kernel::Kernel::cuda(&spec, 0).and_then(|k| {
        let x = Array::ones(&[4], Dtype::F32)?;
        let out = k.call(
            &[&x],
            &mlx::kernel::Launch {
                output_shapes: vec![vec![4]],
                output_dtypes: vec![Dtype::F32],
                grid: [4, 1, 1],
                threadgroup: [4, 1, 1],
                template: vec![],
                init_value: None,
            },
        )?;
        out[0].eval()
    });
    let err = result.unwrap_err();
    assert!(!err.message.is_empty());
}

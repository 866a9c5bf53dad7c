use super::*;

#[test]
fn the_least_of_finite_values_and_nan_for_any_other() {
    assert_eq!(least_finite(&[]), f32::INFINITY);
    assert_eq!(least_finite(&[3.0, 1.0, 2.0]), 1.0);
    let many: Vec<f32> = (0..37).map(|i| ((i * 17) % 37) as f32 - 5.0).collect();
    assert_eq!(least_finite(&many), -5.0);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        // In the lanes and in the remainder.
        for at in [0, 5, 8, 20, 36] {
            let mut v = many.clone();
            v[at] = bad;
            assert!(least_finite(&v).is_nan(), "{bad} at {at}");
        }
    }
}

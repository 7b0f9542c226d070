use super::*;

#[test]
fn slices_are_views_within_a_piece_and_copies_across_pieces() {
    let whole: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut s = StripePieces::default();
    for c in whole.chunks(300) {
        s.push(Bytes::copy_from_slice(c));
    }
    s.push(Bytes::new()); // empty pieces are ignored
    assert_eq!(s.len(), 1000);
    assert_eq!(s.to_vec(), whole);
    for (lo, hi) in [
        (0, 300),
        (10, 20),
        (299, 301),
        (0, 1000),
        (650, 2000),
        (999, 1000),
        (5, 5),
        (1200, 1300),
    ] {
        let want = &whole[lo.min(1000)..hi.min(1000).max(lo.min(1000))];
        assert_eq!(&s.slice(lo, hi)[..], want, "{lo}..{hi}");
    }
    // a range inside the second piece shares its memory
    let view = s.slice(310, 320);
    assert_eq!(view.as_ptr(), s.pieces[1][10..].as_ptr());
    assert_eq!(StripePieces::from(whole.clone()).slice(0, 1000), whole);
}

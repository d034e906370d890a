import pytest

pytest.importorskip("rdkit", reason="molecule tests need the chem extra (installed by `make test`)")

from flowdisco.domains import get_domain, list_domains
from flowdisco.domains.rings import ring_systems_of, unknown_ring_fraction, unknown_ring_systems


def test_ring_systems_join_rings_that_share_atoms_and_only_those():
    assert ring_systems_of("CCO") == []
    assert ring_systems_of("c1ccc2ccccc2c1") == ["c1ccc2ccccc2c1"]  # fused: one system
    assert ring_systems_of("C1CCC2(CC1)CC2") == ["C1CCC2(CC1)CC2"]  # spiro: one system
    assert ring_systems_of("c1ccccc1-c1ccccc1") == ["c1ccccc1", "c1ccccc1"]  # joined by a bond: two
    assert sorted(ring_systems_of("C1CC1CC1CCC1")) == ["C1CC1", "C1CCC1"]  # joined by a chain: two
    assert ring_systems_of("not a molecule") is None


def test_a_ring_system_is_named_without_its_substituents():
    # substituents, their bonds and stereochemistry do not change the ring system's string
    assert ring_systems_of("CC12CC1C2") == ring_systems_of("OC1C2CC12") == ring_systems_of("C1C2CC12")
    assert ring_systems_of("Cn1cccc1") == ring_systems_of("c1cc[nH]c1")  # the N's substituent becomes H
    assert ring_systems_of("C[C@H]1C[C@@H]1C") == ["C1CC1"]
    assert ring_systems_of("O=C1CC1") == ["C1CC1"]  # an exocyclic double bond is a substituent
    assert ring_systems_of("C1=CC1") != ring_systems_of("C1CC1")  # bond orders inside the ring count


def test_unknown_ring_systems_and_their_share():
    known = {"c1ccccc1", "C1CC1"}
    assert unknown_ring_systems("Cc1ccccc1", known) == []
    assert unknown_ring_systems("c1ccccc1C1CCC1", known) == ["C1CCC1"]
    assert unknown_ring_systems("?", known) is None
    # unparsable SMILES are left out of the share: 1 of the 4 parsable molecules has an unknown system
    assert unknown_ring_fraction(["CCO", "c1ccccc1", "C1CC1C", "C1CCCC1", "?"], known) == 0.25


def test_known_rings_domain_rejects_ring_chemistry_its_training_set_lacks(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWDISCO_CACHE", str(tmp_path / "cache"))
    substituents = ["C", "CC", "O", "N", "F", "OC", "NC", "O=C", "CCO", "CCC"]
    rows = [f"{s}c1ccccc1" for s in substituents] + [f"{s}C1CCCCC1" for s in substituents] + ["CCO", "CCN"] * 5
    data = tmp_path / "mols.txt"
    data.write_text("\n".join(rows) + "\n")
    strict = get_domain("qm9-known-rings", data_file=str(data))
    loose = get_domain("qm9", data_file=str(data))
    assert strict.name == "qm9-known-rings" and loose.name == "qm9"
    assert strict.known_ring_systems() == {"c1ccccc1", "C1CCCCC1"}
    designs = ["Nc1ccccc1", "CC(O)C1CCCCC1", "CCCO", "C1CC1", "c1ccccc1C1CC1", "[NH4+]"]
    assert list(strict.check(designs)) == [True, True, True, False, False, False]
    assert list(loose.check(designs)) == [True, True, True, True, True, False]
    assert strict.rejection_reason("C1CC1") == "a ring system not in the training set"
    assert strict.rejection_reason("[NH4+]") == loose.rejection_reason("[NH4+]")  # its own checks come first
    assert list((tmp_path / "cache").glob("ring-systems-*.json"))  # collected once, kept for the next process


def test_known_rings_variants_are_registered_and_bad_rules_refused():
    names = set(list_domains())
    assert {"qm9-known-rings", "qm9-discrete-known-rings", "moses-known-rings", "moses-discrete-known-rings"} <= names
    assert get_domain("qm9-discrete-known-rings").name == "qm9-discrete-known-rings"
    from flowdisco.domains.qm9 import QM9

    with pytest.raises(ValueError, match="unknown ring_systems rule 'new'"):
        QM9(ring_systems="new")

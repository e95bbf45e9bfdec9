"""storefront image: the spec-driven checks in tests/images/common apply here;
the application bundle checks come with the Saleor tier bakes."""


def test_role_identity(host, spec):
    assert host.file("/etc/builder/role.json").contains('"storefront"')

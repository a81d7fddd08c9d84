"""lxml and xmlsec must be built on one libxml2, or ``import xmlsec`` fails at start-up."""

import lxml.etree
import xmlsec


def test_lxml_and_xmlsec_share_one_libxml2() -> None:
    assert lxml.etree.LIBXML_VERSION == xmlsec.get_libxml_version()

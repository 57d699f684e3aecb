"""RSA blind signatures (lanon.common.blindrsa) against RFC 9474's own test vectors.

The vectors (RFC 9474 Appendix A, all four variants) are copied from
cloudflare/circl, blindsign/blindrsa/testdata/test_vectors_rfc9474.json.gz (commit 33d33c7),
which is byte for byte the same file as cloudflare/blindrsa-ts,
test/testdata/test_vectors_rfc9474.json ("Compatible with rfc9474", f28a849). All four use the
same 4096-bit key (identical p, q, n, e, d in every entry), given once below as KEY. The RFC's
prepared_msg is called input_msg there; the numbers p, q, d, n, e, inv were given as 0x-prefixed
hex. Random draws (message randomizer, salt, blinding factor r = inv^-1 mod n) are replayed
through the functions' rng argument, so every step is checked byte for byte.
"""

from __future__ import annotations

import copy
import hashlib
import math

import pytest

from lanon.common import blindrsa
from lanon.common.blindrsa import BlindRSAError

KEY: dict[str, str] = {
    "p": (
        "e1f4d7a34802e27c7392a3cea32a262a34dc3691bd87f3f310dc756734889305"
        "59c120fd0410194fb8a0da55bd0b81227e843fdca6692ae80e5a5d414116d480"
        "3fca7d8c30eaaae57e44a1816ebb5c5b0606c536246c7f11985d731684150b63"
        "c9a3ad9e41b04c0b5b27cb188a692c84696b742a80d3cd00ab891f2457443dad"
        "feba6d6daf108602be26d7071803c67105a5426838e6889d77e8474b29244cef"
        "af418e381b312048b457d73419213063c60ee7b0d81820165864fef93523c963"
        "5c22210956e53a8d96322493ffc58d845368e2416e078e5bcb5d2fd68ae6acfa"
        "54f9627c42e84a9d3f2774017e32ebca06308a12ecc290c7cd1156dcccfb2311"
    ),
    "q": (
        "c601a9caea66dc3835827b539db9df6f6f5ae77244692780cd334a006ab353c8"
        "06426b60718c05245650821d39445d3ab591ed10a7339f15d83fe13f6a3dfb20"
        "b9452c6a9b42eaa62a68c970df3cadb2139f804ad8223d56108dfde30ba7d367"
        "e9b0a7a80c4fdba2fd9dde6661fc73fc2947569d2029f2870fc02d8325acf28c"
        "9afa19ecf962daa7916e21afad09eb62fe9f1cf91b77dc879b7974b490d3ebd2"
        "e95426057f35d0a3c9f45f79ac727ab81a519a8b9285932d9b2e5ccd347e59f3"
        "f32ad9ca359115e7da008ab7406707bd0e8e185a5ed8758b5ba266e8828f8d86"
        "3ae133846304a2936ad7bc7c9803879d2fc4a28e69291d73dbd799f8bc238385"
    ),
    "d": (
        "0d43242aefe1fb2c13fbc66e20b678c4336d20b1808c558b6e62ad16a2870771"
        "80b177e1f01b12f9c6cd6c52630257ccef26a45135a990928773f3bd2fc01a31"
        "3f1dac97a51cec71cb1fd7efc7adffdeb05f1fb04812c924ed7f4a8269925dad"
        "88bd7dcfbc4ef01020ebfc60cb3e04c54f981fdbd273e69a8a58b8ceb7c2d83f"
        "bcbd6f784d052201b88a9848186f2a45c0d2826870733e6fd9aa46983e0a6e82"
        "e35ca20a439c5ee7b502a9062e1066493bdadf8b49eb30d9558ed85abc7afb29"
        "b3c9bc644199654a4676681af4babcea4e6f71fe4565c9c1b85d9985b84ec1ab"
        "f1a820a9bbebee0df1398aae2c85ab580a9f13e7743afd3108eb32100b870648"
        "fa6bc17e8abac4d3c99246b1f0ea9f7f93a5dd5458c56d9f3f81ff2216b3c368"
        "0a13591673c43194d8e6fc93fc1e37ce2986bd628ac48088bc723d8fbe293861"
        "ca7a9f4a73e9fa63b1b6d0074f5dea2a624c5249ff3ad811b6255b299d6bc545"
        "1ba7477f19c5a0db690c3e6476398b1483d10314afd38bbaf6e2fbdbcd62c3ca"
        "9797a420ca6034ec0a83360a3ee2adf4b9d4ba29731d131b099a38d6a23cc463"
        "db754603211260e99d19affc902c915d7854554aabf608e3ac52c19b8aa26ae0"
        "42249b17b2d29669b5c859103ee53ef9bdc73ba3c6b537d5c34b6d8f034671d7"
        "f3a8a6966cc4543df223565343154140fd7391c7e7be03e241f4ecfeb877a051"
    ),
    "n": (
        "aec4d69addc70b990ea66a5e70603b6fee27aafebd08f2d94cbe1250c556e047"
        "a928d635c3f45ee9b66d1bc628a03bac9b7c3f416fe20dabea8f3d7b4bbf7f96"
        "3be335d2328d67e6c13ee4a8f955e05a3283720d3e1f139c38e43e0338ad058a"
        "9495c53377fc35be64d208f89b4aa721bf7f7d3fef837be2a80e0f8adf0bcd1e"
        "ec5bb040443a2b2792fdca522a7472aed74f31a1ebe1eebc1f408660a0543dfe"
        "2a850f106a617ec6685573702eaaa21a5640a5dcaf9b74e397fa3af18a2f1b7c"
        "03ba91a6336158de420d63188ee143866ee415735d155b7c2d854d795b7bc236"
        "cffd71542df34234221a0413e142d8c61355cc44d45bda94204974557ac2704c"
        "d8b593f035a5724b1adf442e78c542cd4414fce6f1298182fb6d8e53cef1adfd"
        "2e90e1e4deec52999bdc6c29144e8d52a125232c8c6d75c706ea3cc06841c7bd"
        "a33568c63a6c03817f722b50fcf898237d788a4400869e44d90a3020923dc646"
        "388abcc914315215fcd1bae11b1c751fd52443aac8f601087d8d42737c18a3fa"
        "11ecd4131ecae017ae0a14acfc4ef85b83c19fed33cfd1cd629da2c4c09e222b"
        "398e18d822f77bb378dea3cb360b605e5aa58b20edc29d000a66bd177c682a17"
        "e7eb12a63ef7c2e4183e0d898f3d6bf567ba8ae84f84f1d23bf8b8e261c3729e"
        "2fa6d07b832e07cddd1d14f55325c6f924267957121902dc19b3b32948bdead5"
    ),
    "e": "010001",
}

VECTORS: list[dict[str, str]] = [
    {
        "name": "RSABSSA-SHA384-PSS-Randomized",
        "msg": (
            "8f3dc6fb8c4a02f4d6352edf0907822c1210a9b32f9bdda4c45a698c80023aa6"
            "b59f8cfec5fdbb36331372ebefedae7d"
        ),
        "msg_prefix": "8417e699b219d583fb6216ae0c53ca0e9723442d02f1d1a34295527e7d929e8b",
        "input_msg": (
            "8417e699b219d583fb6216ae0c53ca0e9723442d02f1d1a34295527e7d929e8b"
            "8f3dc6fb8c4a02f4d6352edf0907822c1210a9b32f9bdda4c45a698c80023aa6"
            "b59f8cfec5fdbb36331372ebefedae7d"
        ),
        "salt": (
            "051722b35f458781397c3a671a7d3bd3096503940e4c4f1aaa269d60300ce449"
            "555cd7340100df9d46944c5356825abf"
        ),
        # Not in the JSON files above: RFC 9474 A.1 prints it; copied as implementations quote it
        # and checked below against RSAVP1(sig), which the JSON does give.
        "encoded_msg": (
            "2be01c5669eb676cb3f0002eb636427d61568f3f0579da5b998279a7eb3ab784"
            "e5617319376d04809d83e72bef9f0738e7324af3fd1b4f0a35f4f58058ab3294"
            "95406bdb5ff31a0274be2d137c735ab0d5a591b3129a6cc46fcecc4b41dbc684"
            "c965cb30e3eb4864ef18cc8d95b4d6a2002607c821d4d8a7e026ae7bb1f6b4c7"
            "c93d1b58e9cd87864d6094b0d8f7e2b5f966473703634fb58c774dd4a24376e0"
            "eb262a24b58e3a0b4da4f36ef75651627561ff2ecee9dcbfe1d728cc31a7b460"
            "30f7a2815ae9edf9a2a5c0c6d8dbab1b33b9c3bbda5c083670a3550f7d74c426"
            "3aad09f8ed1d435fc6295ca4d51fc02c7de9ae28ffd53372c3fa864521b27560"
            "daa11ab9daad8d0d747661718d2f79c59d0661b09c74863fa32bdcb1c408d3bd"
            "24569c57aecae6e06c0c9deb7303c5b7b1240960fd2413d61b2e3829af8c0987"
            "4fdba0fe84ca6aa7e7d533f9b0ddfe508f562b132ca2d325f1e73f91a8a6b831"
            "a2fd9bc0bd5bfa5ea3a1dee16bd9b264174b9553a4c0c0d62373353355c05b35"
            "824e4bae702f49e5a6bf83eaff65af499045bcef1470a0e58ddb21856034af0d"
            "b96f8636d4a6f1591f34c7224e0c0293e3d3be2139f2797c5ed8b65473ac2f83"
            "c52b87f8cf8754ac2f55f5e41e105df1d079a647fb1aa591526295667f37db11"
            "29752d024eb03bfe506a43665072118423351ef9b8663376f9fc073141e1e7bc"
        ),
        "inv": (
            "80682c48982407b489d53d1261b19ec8627d02b8cda5336750b8cee332ae260d"
            "e57b02d72609c1e0e9f28e2040fc65b6f02d56dbd6aa9af8fde656f70495dfb7"
            "23ba01173d4707a12fddac628ca29f3e32340bd8f7ddb557cf819f6b01e445ad"
            "96f874ba235584ee71f6581f62d4f43bf03f910f6510deb85e8ef06c7f09d979"
            "4a008be7ff2529f0ebb69decef646387dc767b74939265fec0223aa6d84d2a8a"
            "1cc912d5ca25b4e144ab8f6ba054b54910176d5737a2cff011da431bd5f2a0d2"
            "d66b9e70b39f4b050e45c0d9c16f02deda9ddf2d00f3e4b01037d7029cd49c2d"
            "46a8e1fc2c0c17520af1f4b5e25ba396afc4cd60c494a4c426448b35b49635b3"
            "37cfb08e7c22a39b256dd032c00adddafb51a627f99a0e1704170ac1f1912e49"
            "d9db10ec04c19c58f420212973e0cb329524223a6aa56c7937c5dffdb5d966b6"
            "cd4cbc26f3201dd25c80960a1a111b32947bb78973d269fac7f5186530930ed1"
            "9f68507540eed9e1bab8b00f00d8ca09b3f099aae46180e04e3584bd7ca054df"
            "18a1504b89d1d1675d0966c4ae1407be325cdf623cf13ff13e4a28b594d59e3e"
            "adbadf6136eee7a59d6a444c9eb4e2198e8a974f27a39eb63af2c9af3870488b"
            "8adaad444674f512133ad80b9220e09158521614f1faadfe8505ef57b7df6813"
            "048603f0dd04f4280177a11380fbfc861dbcbd7418d62155248dad5fdec0991f"
        ),
        "blinded_msg": (
            "aa3ee045138d874669685ffaef962c7694a9450aa9b4fd6465db9b3b75a522bb"
            "921c4c0fdcdfae9667593255099cff51f5d3fd65e8ffb9d3b3036252a6b51b6e"
            "dfb3f40382b2bbf34c0055e4cbcc422850e586d84f190cd449af11dc65545f5f"
            "e26fd89796eb87da4bda0c545f397cddfeeb56f06e28135ec74fd477949e7677"
            "f6f36cfae8fd5c1c5898b03b9c244cf6d1a4fb7ad1cb43aff5e80cb462fac541"
            "e72f67f0a50f1843d1759edfaae92d1a916d3f0efaf4d650db416c3bf8abdb54"
            "14a78cebc97de676723cb119e77aea489f2bbf530c440ebc5a75dccd3ebf5a41"
            "2a5f346badd61bee588e5917bdcce9dc33c882e39826951b0b8276c620397194"
            "7072b726e935816056ff5cb11a71ca2946478584126bb877acdf87255f26e6cc"
            "a4e0878801307485d3b7bb89b289551a8b65a7a6b93db010423d1406e149c877"
            "31910306e5e410b41d4da3234624e74f92845183e323cf7eb244f212a695f885"
            "6c675fbc3a021ce649e22c6f0d053a9d238841cf3afdc2739f99672a419ae13c"
            "17f1f8a3bc302ec2e7b98e8c353898b7150ad8877ec841ea6e4b288064c254fe"
            "fd0d049c3ad196bf7ffa535e74585d0120ce728036ed500942fbd5e6332c298f"
            "1ffebe9ff60c1e117b274cf0cb9d70c36ee4891528996ec1ed0b178e9f3c0c0e"
            "6120885f39e8ccaadbb20f3196378c07b1ff22d10049d3039a7a92fe7efdd95d"
        ),
        "blind_sig": (
            "3f4a79eacd4445fca628a310d41e12fcd813c4d43aa4ef2b81226953248d6d00"
            "adfee6b79cb88bfa1f99270369fd063c023e5ed546719b0b2d143dd1bca46b0e"
            "0e615fe5c63d95c5a6b873b8b50bc52487354e69c3dfbf416e7aca18d5842c89"
            "b676efdd38087008fa5a810161fcdec26f20ccf2f1e6ab0f9d2bb93e051cb9e8"
            "6a9b28c5bb62fd5f5391379f887c0f706a08bcc3b9e7506aaf02485d688198f5"
            "e22eefdf837b2dd919320b17482c5cc54271b4ccb41d267629b3f844fd63750b"
            "01f5276c79e33718bb561a152acb2eb36d8be75bce05c9d1b94eb609106f3822"
            "6fb2e0f5cd5c5c39c59dda166862de498b8d92f6bcb41af433d65a2ac23da87f"
            "39764cb64e79e74a8f4ce4dd567480d967cefac46b6e9c06434c371563583435"
            "7edd2ce6f105eea854ac126ccfa3de2aac5607565a4e5efaac5eed491c335f6f"
            "c97e6eb7e9cea3e12de38dfb315220c0a3f84536abb2fdd722813e083feda010"
            "391ac3d8fd1cd9212b5d94e634e69ebcc800c4d5c4c1091c64afc37acf563c7f"
            "c0a6e4c082bc55544f50a7971f3fb97d5853d72c3af34ffd5ce123998be5360d"
            "1059820c66a81e1ee6d9c1803b5b62af6bc877526df255b6d1d835d8c840bebb"
            "cd6cc0ee910f17da37caf8488afbc08397a1941fcc79e76a5888a95b3d5405e1"
            "3f737bea5c78d716a48eb9dc0aec8de39c4b45c6914ad4a8185969f70b1adf46"
        ),
        "sig": (
            "191e941c57510e22d29afad257de5ca436d2316221fe870c7cb75205a6c071c2"
            "735aed0bc24c37f3d5bd960ab97a829a508f966bbaed7a82645e65eadaf24ab5"
            "e6d9421392c5b15b7f9b640d34fec512846a3100b80f75ef51064602118c1a77"
            "d28d938f6efc22041d60159a518d3de7c4d840c9c68109672d743d299d8d2577"
            "ef60c19ab463c716b3fa75fa56f5735349d414a44df12bf0dd44aa3e10822a65"
            "1ed4cb0eb6f47c9bd0ef14a034a7ac2451e30434d513eb22e68b7587a8de9b4e"
            "63a059d05c8b22c7c51e2cfee2d8bef511412e93c859a13726d87c57d1bc4c2e"
            "68ab121562f839c3a3d233e87ed63c69b7e57525367753fbebcc2a9805a28026"
            "59f5888b2c69115bf865559f10d906c09d048a0d71bfee4b33857393ec2b69e4"
            "51433496d02c9a7910abb954317720bbde9e69108eafc3e90bad3d5ca4066d7b"
            "1e49013fa04e948104a1dd82b12509ecb146e948c54bd8bfb5e6d18127cd1f7a"
            "93c3cf9f2d869d5a78878c03fe808a0d799e910be6f26d18db61c485b303631d"
            "3568368fc41986d08a95ea6ac0592240c19d7b22416b9c82ae6241e211dd5610"
            "d0baaa9823158f9c32b66318f5529491b7eeadcaa71898a63bac9d95f4aa548d"
            "5e97568d744fc429104e32edd9c87519892a198a30d333d427739ffb9607b092"
            "e910ae37771abf2adb9f63bc058bf58062ad456cb934679795bbdfcdfad5e0f2"
        ),
    },
    {
        "name": "RSABSSA-SHA384-PSSZERO-Randomized",
        "msg": (
            "8f3dc6fb8c4a02f4d6352edf0907822c1210a9b32f9bdda4c45a698c80023aa6"
            "b59f8cfec5fdbb36331372ebefedae7d"
        ),
        "msg_prefix": "84ea86c8cf3beedfed73beceabd792027c609d1100bf041fdd60d826a718130d",
        "input_msg": (
            "84ea86c8cf3beedfed73beceabd792027c609d1100bf041fdd60d826a718130d"
            "8f3dc6fb8c4a02f4d6352edf0907822c1210a9b32f9bdda4c45a698c80023aa6"
            "b59f8cfec5fdbb36331372ebefedae7d"
        ),
        "salt": "",
        "encoded_msg": (
            "37f4ea66054b3570f2c46f43125a8df8d751a81db1003edcc70e9888cb3d0fa7"
            "1bb7634437a779c1bf9e84e88b3479894490ee41cd69fc8e911478326fe8460d"
            "1699f96abedde22ba0ba25a02f78bae77eb039decd41e6cd40fecc28f301c94d"
            "5644eb3e55b316569e2bec3ccf8e33b06eb6defca5fe672613d33ea60f84daa5"
            "60ded4c1c5e65613fb19e090d0fc96a1394e29dfad6a7644362bf30bdc90c7ca"
            "0a065190f5a099b5c33ae787b872518a724d9aa139229656eb21053bbe86c38f"
            "6d03b4c6fa37a900935d9b8d19e0c394be4af6af028680996e3fd533b6698ce9"
            "e2ed6a9f96d4d3a682027ae5240040e55d75017dc303b7142c1f7e17b79778a9"
            "4431398d21dc0cc7ae454cc0d6cf4db4d588d3fd15fd7f71576052fd2a52d688"
            "f99790dfb13808ecb24b6b9e9a43a8c0105670ec3ad8d6318a9c6a9cef9eb99b"
            "36d74b8e83dbacf6e8100e135b609850b34a4b01091b263678d7cd9905af2ffd"
            "a801a2888d863a25211903b43cb5e59f5dba6bc18713ce4f028f1774c5936649"
            "12f1d181d4544a13a1da354332d8595f59cf5af260a8aaf21a6bc948b5d5d4a5"
            "20c1f72c216259dc12a33c2a3bd4d32ff2bf3de2ffe76e51f8af030b40fadc58"
            "99e740da20be1dd5a50f701292ceaee51fa35d9a047f3efc6543dc583fb3f23a"
            "beade39c2a5b5b352de26d7a11267435be7bffa8f2292e139fad923dbaf863bc"
        ),
        "inv": (
            "80682c48982407b489d53d1261b19ec8627d02b8cda5336750b8cee332ae260d"
            "e57b02d72609c1e0e9f28e2040fc65b6f02d56dbd6aa9af8fde656f70495dfb7"
            "23ba01173d4707a12fddac628ca29f3e32340bd8f7ddb557cf819f6b01e445ad"
            "96f874ba235584ee71f6581f62d4f43bf03f910f6510deb85e8ef06c7f09d979"
            "4a008be7ff2529f0ebb69decef646387dc767b74939265fec0223aa6d84d2a8a"
            "1cc912d5ca25b4e144ab8f6ba054b54910176d5737a2cff011da431bd5f2a0d2"
            "d66b9e70b39f4b050e45c0d9c16f02deda9ddf2d00f3e4b01037d7029cd49c2d"
            "46a8e1fc2c0c17520af1f4b5e25ba396afc4cd60c494a4c426448b35b49635b3"
            "37cfb08e7c22a39b256dd032c00adddafb51a627f99a0e1704170ac1f1912e49"
            "d9db10ec04c19c58f420212973e0cb329524223a6aa56c7937c5dffdb5d966b6"
            "cd4cbc26f3201dd25c80960a1a111b32947bb78973d269fac7f5186530930ed1"
            "9f68507540eed9e1bab8b00f00d8ca09b3f099aae46180e04e3584bd7ca054df"
            "18a1504b89d1d1675d0966c4ae1407be325cdf623cf13ff13e4a28b594d59e3e"
            "adbadf6136eee7a59d6a444c9eb4e2198e8a974f27a39eb63af2c9af3870488b"
            "8adaad444674f512133ad80b9220e09158521614f1faadfe8505ef57b7df6813"
            "048603f0dd04f4280177a11380fbfc861dbcbd7418d62155248dad5fdec0991f"
        ),
        "blinded_msg": (
            "4c1b82d9b97b968b2ce0754e326abd49e3d723ed937d84bead34b6a834483b43"
            "d510bf62ca47683ed366d94d3d357b270a85cf2cc2ddd171141b45d7549d5373"
            "cf67d14f6f462c14ebded906793144faba37f129c0f3172854ec0f854e555552"
            "eec5a30c87788f1039814594f04348709e26a883be82affff207b1886b75c037"
            "f43f847f45d89bcbf210c22ffcdf8118ce8a526b3723e6209c26319f8f5d2adc"
            "f0b637031c9fdf53470a915c587e30287ba88ed4f1cd5e93cf3d4990acf31fff"
            "dbfddec80ae0b728d5b4c612a396fd81acaa65566a4dc1c24624f44fd10cdba0"
            "5f3d0bed2e69bb0d13d41a9f1b4e67aa566520778733ced5e6260f4d1982f63b"
            "b835442acffe3cb87f5f8ec6bb84226e0eab787159d08e57604b13557ceea97f"
            "2c4ad0631accf898f302df86f0b64354ec0b3bdf1b4e2a4deb4d38f655ea8d80"
            "de4cc19aa06ffcd56e348faf894c8774c53235ddcc152d80cf66b417eee4d182"
            "781bab8c979937a3c7502d8f39c57c4f09884de5a7247f2539910a96e4b15f9a"
            "3df88edc21a13030af357467a99dca50dba4afe4a6185a240ac8f1d8aab2e834"
            "43025f94e1af930f56f78661369cc6790701f31b83aec40f96a72c7f7ba13b4e"
            "bdd8e24e7351f4ffba0a7c072cb28f13aff06cd02368491044fcc536213b2e3b"
            "1cf6ca81cf2097b7b19d2b36bd246f390f53768f1c2e56113ea91b33c7cfa647"
        ),
        "blind_sig": (
            "4894f64d7214c216282d9842cbf7e7cccd9c0dcb1f4294a6bdeccd4c4c244616"
            "0d7cac7892f01b70dfa69f533891d2fbb447f7cf7541d1b504a2d46fc1bb6de2"
            "6b345972aada8ebce280b906f3a10a13208f77ef896fbe6bc4504327fd4c5c8f"
            "03211d45ae9672e9f4be0f4900762ba2a7177a58b90d6dd1263faf2b7a5f15d5"
            "0a7b00e733742c1b6a1ea4eb5fbfb407abf14496ab26b50cf1a5a56dea616b7a"
            "6a5595777400571a751c682b9fdd6badb3f72292f314f4ba2ba0f394f91676a4"
            "bb12e60ea08c977f7082be6357c1ca82fe3301fe5fb4128609bee2410db0481a"
            "ea3a5737fb0bce9381272c2202644f662e99f64bf1190d66e230cc0371ec33fe"
            "32fe725dfd872041914d39462a909414a780c9aab394af443199eba56c83986d"
            "22d57d4421b41ff8e5bec537d271223adb34d26c64989048a88d8f352a06a7cc"
            "153e216a6bed9548bb38d2a1600b2f3403289df6df74aec525ef9e413b7140a7"
            "c1a914dedd74a336f1beed39a8e5e2cef76cac094df0dbb3fa55d4b7ee781c74"
            "bed3bd8bc7aa6ef3f1dbfa4674945720ec93dafa6d0650229ab75e3fae687327"
            "fac081cf4bb376e02a2b73314c54c12f88572c28980f13aba5731bc5a3a60575"
            "ea116c8ea2fe5009168deb1255026c9310783ff7f644255d3e1691e194db1bab"
            "d7780b9a5dc0cb3de2b700d12f49cbe4db51ca2f3c8a58b09e854cc71e8070ab"
        ),
        "sig": (
            "195363ba25e4bf763f6538c86865785f93f4ea6092da3ad200d41b99eb0eb086"
            "9fa792df619fd8fa5923d5d03d5882faae6d25054118deef5e4a6a252dd5afb0"
            "dac262b74c391090b1575fbafd959d26bc294f47fb45a2c1c209932c4f94b243"
            "94eded91fbdd015e1a85dde63c9e77a0283f812cad1192d86432c51331e46fd4"
            "f3771bbafb929f847a19cb05e5f79b6b519d67e8f005951e53656be97cb612d2"
            "f506618b366403b34648451d6fbc7318c2f3f583cc6fa17bf2108398f9284e06"
            "02187904406a9322f1e7b8016ca9ad11b835756df862c465c420535e25faa48b"
            "f341f7ee8192be47fa875791f32f56d5e631d237060688f052426dee5b0b2b74"
            "ca5f830e82a453379eedb541fa4fcdaa19dae6509401e3cdd4c40f5c9243db3f"
            "6d7115c4e8cd6db8290723ab01d9d0d7e355a97a01547800e43f11736668c3f8"
            "908848d759c33a67a2f506abc3f6871cbe625b1bc71eb06d785a59501396712c"
            "581a60d6ccc450d2f4eb4cf08ae0dbfa45c2860425be90cc4cd4c989495bbd29"
            "63e19c59ae5d90d1ca884e80d654b5f2cd6a80c3588b514ee91c802736f594c3"
            "40397b316a97e9c70b0609955b6c3ee06f4760d9377f0797a0411a244db395bb"
            "8b711ef79fbcb5589226174029be79a72dcd6f4ca566b7b1b9a27e43b5c02a9a"
            "579d60bdda183398d66d76e0e8eceb1af2f27633589d043bcdc041683b31f7f1"
        ),
    },
    {
        "name": "RSABSSA-SHA384-PSS-Deterministic",
        "msg": (
            "8f3dc6fb8c4a02f4d6352edf0907822c1210a9b32f9bdda4c45a698c80023aa6"
            "b59f8cfec5fdbb36331372ebefedae7d"
        ),
        "msg_prefix": "",
        "input_msg": (
            "8f3dc6fb8c4a02f4d6352edf0907822c1210a9b32f9bdda4c45a698c80023aa6"
            "b59f8cfec5fdbb36331372ebefedae7d"
        ),
        "salt": (
            "051722b35f458781397c3a671a7d3bd3096503940e4c4f1aaa269d60300ce449"
            "555cd7340100df9d46944c5356825abf"
        ),
        "encoded_msg": (
            "6e0c464d9c2f9fbc147b43570fc4f238e0d0b38870b3addcf7a4217df912ccef"
            "17a7f629aa850f63a063925f312d61d6437be954b45025e8282f9c0b1131bc8f"
            "f19a8a928d859b37113db1064f92a27f64761c181c1e1f9b251ae5a2f8a40475"
            "73b67a270584e089beadcb13e7c82337797119712e9b849ff56e04385d144d3c"
            "a9d8d92bf78adb20b5bbeb3685f17038ec6afade3ef354429c51c687b45a7018"
            "ee3a6966b3af15c9ba8f40e6461ba0a17ef5a799672ad882bab02b518f9da7c1"
            "a962945c2e9b0f02f29b31b9cdf3e633f9d9d2a22e96e1de28e25241ca7dd041"
            "47112f578973403e0f4fd80865965475d22294f065e17a1c4a201de93bd14223"
            "e6b1b999fd548f2f759f52db71964528b6f15b9c2d7811f2a0a35d534b821630"
            "1c47f4f04f412cae142b48c4cdff78bc54df690fd43142d750c671dd8e2e938e"
            "6a440b2f825b6dbb3e19f1d7a3c0150428a47948037c322365b7fe6fe57ac88d"
            "8f80889e9ff38177bad8c8d8d98db42908b389cb59692a58ce275aa15acb032c"
            "a951b3e0a3404b7f33f655b7c7d83a2f8d1b6bbff49d5fcedf2e030e80881aa4"
            "36db27a5c0dea13f32e7d460dbf01240c2320c2bb5b3225b17145c72d61d47c8"
            "f84d1e19417ebd8ce3638a82d395cc6f7050b6209d9283dc7b93fecc04f3f9e7"
            "f566829ac41568ef799480c733c09759aa9734e2013d7640dc6151018ea902bc"
        ),
        "inv": (
            "80682c48982407b489d53d1261b19ec8627d02b8cda5336750b8cee332ae260d"
            "e57b02d72609c1e0e9f28e2040fc65b6f02d56dbd6aa9af8fde656f70495dfb7"
            "23ba01173d4707a12fddac628ca29f3e32340bd8f7ddb557cf819f6b01e445ad"
            "96f874ba235584ee71f6581f62d4f43bf03f910f6510deb85e8ef06c7f09d979"
            "4a008be7ff2529f0ebb69decef646387dc767b74939265fec0223aa6d84d2a8a"
            "1cc912d5ca25b4e144ab8f6ba054b54910176d5737a2cff011da431bd5f2a0d2"
            "d66b9e70b39f4b050e45c0d9c16f02deda9ddf2d00f3e4b01037d7029cd49c2d"
            "46a8e1fc2c0c17520af1f4b5e25ba396afc4cd60c494a4c426448b35b49635b3"
            "37cfb08e7c22a39b256dd032c00adddafb51a627f99a0e1704170ac1f1912e49"
            "d9db10ec04c19c58f420212973e0cb329524223a6aa56c7937c5dffdb5d966b6"
            "cd4cbc26f3201dd25c80960a1a111b32947bb78973d269fac7f5186530930ed1"
            "9f68507540eed9e1bab8b00f00d8ca09b3f099aae46180e04e3584bd7ca054df"
            "18a1504b89d1d1675d0966c4ae1407be325cdf623cf13ff13e4a28b594d59e3e"
            "adbadf6136eee7a59d6a444c9eb4e2198e8a974f27a39eb63af2c9af3870488b"
            "8adaad444674f512133ad80b9220e09158521614f1faadfe8505ef57b7df6813"
            "048603f0dd04f4280177a11380fbfc861dbcbd7418d62155248dad5fdec0991f"
        ),
        "blinded_msg": (
            "10c166c6a711e81c46f45b18e5873cc4f494f003180dd7f115585d871a289302"
            "59654fe28a54dab319cc5011204c8373b50a57b0fdc7a678bd74c523259dfe4f"
            "d5ea9f52f170e19dfa332930ad1609fc8a00902d725cfe50685c95e5b2968c9a"
            "2828a21207fcf393d15f849769e2af34ac4259d91dfd98c3a707c509e1af5564"
            "7efaa31290ddf48e0133b798562af5eabd327270ac2fb6c594734ce339a14ea4"
            "fe1b9a2f81c0bc230ca523bda17ff42a377266bc2778a274c0ae5ec5a8cbbe36"
            "4fcf0d2403f7ee178d77ff28b67a20c7ceec009182dbcaa9bc99b51ebbf13b7d"
            "542be337172c6474f2cd3561219fe0dfa3fb207cff89632091ab841cf38d8aa8"
            "8af6891539f263adb8eac6402c41b6ebd72984e43666e537f5f5fe27b2b5aa11"
            "4957e9a580730308a5f5a9c63a1eb599f093ab401d0c6003a451931b6d124180"
            "305705845060ebba6b0036154fcef3e5e9f9e4b87e8f084542fd1dd67e7782a5"
            "585150181c01eb6d90cb95883837384a5b91dbb606f266059ecc51b5acbaa280"
            "e45cfd2eec8cc1cdb1b7211c8e14805ba683f9b78824b2eb005bc8a7d7179a36"
            "c152cb87c8219e5569bba911bb32a1b923ca83de0e03fb10fba75d85c55907dd"
            "a5a2606bf918b056c3808ba496a4d95532212040a5f44f37e1097f26dc27b98a"
            "51837daa78f23e532156296b64352669c94a8a855acf30533d8e0594ace7c442"
        ),
        "blind_sig": (
            "364f6a40dbfbc3bbb257943337eeff791a0f290898a6791283bba581d9eac90a"
            "6376a837241f5f73a78a5c6746e1306ba3adab6067c32ff69115734ce014d354"
            "e2f259d4cbfb890244fd451a497fe6ecf9aa90d19a2d441162f7eaa7ce3fc4e8"
            "9fd4e76b7ae585be2a2c0fd6fb246b8ac8d58bcb585634e30c9168a434786fe5"
            "e0b74bfe8187b47ac091aa571ffea0a864cb906d0e28c77a00e8cd8f6aba4317"
            "a8cc7bf32ce566bd1ef80c64de041728abe087bee6cadd0b7062bde5ceef308a"
            "23bd1ccc154fd0c3a26110df6193464fc0d24ee189aea8979d722170ba945fdc"
            "ce9b1b4b63349980f3a92dc2e5418c54d38a862916926b3f9ca270a8cf40dfb9"
            "772bfbdd9a3e0e0892369c18249211ba857f35963d0e05d8da98f1aa0c6bba58"
            "f47487b8f663e395091275f82941830b050b260e4767ce2fa903e75ff8970c98"
            "bfb3a08d6db91ab1746c86420ee2e909bf681cac173697135983c3594b2def67"
            "3736220452fde4ddec867d40ff42dd3da36c84e3e52508b891a00f50b4f62d11"
            "2edb3b6b6cc3dbd546ba10f36b03f06c0d82aeec3b25e127af545fac28e1613a"
            "0517a6095ad18a98ab79f68801e05c175e15bae21f821e80c80ab4fdec6fb34c"
            "a315e194502b8f3dcf7892b511aee45060e3994cd15e003861bc7220a2babd7b"
            "40eda03382548a34a7110f9b1779bf3ef6011361611e6bc5c0dc851e1509de1a"
        ),
        "sig": (
            "6fef8bf9bc182cd8cf7ce45c7dcf0e6f3e518ae48f06f3c670c649ac737a8b81"
            "19a34d51641785be151a697ed7825fdfece82865123445eab03eb4bb91cecf4d"
            "6951738495f8481151b62de869658573df4e50a95c17c31b52e154ae26a04067"
            "d5ecdc1592c287550bb982a5bb9c30fd53a768cee6baabb3d483e9f1e2da954c"
            "7f4cf492fe3944d2fe456c1ecaf0840369e33fb4010e6b44bb1d721840513524"
            "d8e9a3519f40d1b81ae34fb7a31ee6b7ed641cb16c2ac999004c2191de020145"
            "7523f5a4700dd649267d9286f5c1d193f1454c9f868a57816bf5ff76c838a2ee"
            "b616a3fc9976f65d4371deecfbab29362caebdff69c635fe5a2113da4d4d8c24"
            "f0b16a0584fa05e80e607c5d9a2f765f1f069f8d4da21f27c2a3b5c984b4ab24"
            "899bef46c6d9323df4862fe51ce300fca40fb539c3bb7fe2dcc9409e425f2d3b"
            "95e70e9c49c5feb6ecc9d43442c33d50003ee936845892fb8be475647da9a080"
            "f5bc7f8a716590b3745c2209fe05b17992830ce15f32c7b22cde755c8a2fe50b"
            "d814a0434130b807dc1b7218d4e85342d70695a5d7f29306f25623ad1e8aa08e"
            "f71b54b8ee447b5f64e73d09bdd6c3b7ca224058d7c67cc7551e9241688ada12"
            "d859cb7646fbd3ed8b34312f3b49d69802f0eaa11bc4211c2f7a29cd5c01ed01"
            "a39001c5856fab36228f5ee2f2e1110811872fe7c865c42ed59029c706195d52"
        ),
    },
    {
        "name": "RSABSSA-SHA384-PSSZERO-Deterministic",
        "msg": (
            "8f3dc6fb8c4a02f4d6352edf0907822c1210a9b32f9bdda4c45a698c80023aa6"
            "b59f8cfec5fdbb36331372ebefedae7d"
        ),
        "msg_prefix": "",
        "input_msg": (
            "8f3dc6fb8c4a02f4d6352edf0907822c1210a9b32f9bdda4c45a698c80023aa6"
            "b59f8cfec5fdbb36331372ebefedae7d"
        ),
        "salt": "",
        "encoded_msg": (
            "159499b90471b496c2639ec482e99feaba525c0420c565d17dc60c1bb1f47703"
            "f04436cceaa8f69811e1bf8546fa971226c9e71421b32b571ed5ea0e032269d4"
            "219b4404316eb17a58f277634aeed394b7f3888153b5bb163e40807e605dafdd"
            "1789dd473b0846bdcb6524417bc3a35366fab4261708c0e4b4beba07a1a64bbc"
            "cb4b1ac215d1350a50a501e8e96612028b535ad731abf1f117ee07d07a4de9ce"
            "f3d70f5845ba84c29d5d92c6e66a1f9489a5f527b846825360fd6e90f40ed041"
            "c682e489f3acde984a3ea580181418c1d15017af2657bc4b70485cdc0f1ebc36"
            "93e0d70a5d01f37ff640993fa071274fb9ee44e0c24dcb58ffa21a9a6540d87f"
            "24379beaafcc3b4bd42c45ec6820e03738ce98bea11c71685f31db63429fab86"
            "58bdb816f1ecccb1888f2402de0bd2f0f9646decdcad4c11b41428eec1ed25f2"
            "a86d43bb04f95726bfbd98ea34ca091b7adbabd0e28f17fa0345b89542d23c35"
            "30554987508a23641bd4f9e52962b0bee3ac9ffe005322d26a39941c58477743"
            "00411c69635f96903e8d593530908bd92a4fa6a2d52f88073a647a4b3894b7e4"
            "ebb80699e60227397bfa93f41b1c97e107b632f68e70409372ead2f072c11cf9"
            "9be4486fcbf763dde28ee156db26cd358a69fcb79644f1f2fcc166f41a4c80f5"
            "851ee08be051f14b601418d6e56e61733b9b210c6bef17edac121a754d19b9bc"
        ),
        "inv": (
            "55f2053e9a4309ac61ac4da7f3a314e626f362e95f30337962d12f08b343165c"
            "8dea34d7812dc2dcb227cfa8de49bca57880ac55f6d77b37ed83a32eb33656dd"
            "f0cde29761aef9f86bd758280b3403a63b466831cba4c97e17e9a11e4139f9d8"
            "4e5912b017eafbafdbb3ae59a1424feae6914eb1bf20922c6db5da8a538752b3"
            "b662ae15cae7beac9a0362b8836001c57b0c5167dceb9a66e6ab6a90e9898646"
            "b4274c3662e4316926c4da7caf5aeff611934b70581280ec68fb2ce04c5681ef"
            "95b086b7289afae8ecd669325659791853a9f4c0b784f6f60b212c3b39754d55"
            "39e3671d7930d1272e82b3853b6583a83d9ff70c00ce1938c05eccee531cb075"
            "564059b2749e84b45dff7d179c69c86c5d1870aeffd6281d099838a3a988ff9e"
            "2684f6cc896b5326275309187d9e3558163131e4d247c2ec8317a2c09f8079d3"
            "2db8241c869bc5f773722ed8e68bfa5c518d20b955abf02103fce1a025149b14"
            "670fdfc8a3f0089516db047f86b9be626ff44989d6fcc162c9570da5b862b473"
            "04eca2aceba4dedd6a672458aae779004fe116009600a6a52eb6161a3d09fda0"
            "9963b56f2870a150df7183bfa03ce735513e637631fb4f980657a8cdb953b215"
            "6594607f8ebf7de6999626197072afd7ff60a5d2f782dabe026e0f298df141b8"
            "a276aaf7202d959088d7721786b04c79e45c807eb46fcf3a94031ef351aff644"
        ),
        "blinded_msg": (
            "0c86f078fe8fd2ea6b4e120d3fef7555701a7c6b7bd5606a7fb2ef2769d119f2"
            "639477a7904984d67f0ecf419059aac58041977871d8da253a1aee14cde49cfb"
            "919f502f4d79d56d473a95f450982ad83398c1f3dd3a3342a18df9e81447998e"
            "ae6c7f9de94148a30de0846fc2402b17b2dfe233c450ba41f141ec14b27bf4e7"
            "d79a5c0fa23ad64c2d2fa33691a3048d835f7e477ecba458e4d58f8dbbcfec2a"
            "484e1442ab4b266cfc610fec95f6258ef137590254931dea30f58e96a64cef7a"
            "ca013cb037259d4dec8a2298d3e2ce96c75a10f39dcdfe7e90eba200c73fc3f5"
            "fbbdc4d50d33990559504d0ddb4fe50407fc21321128f72866c780d1412f20d4"
            "788ad0ebc2077dca4ae87108e416c3510609867196f4fbb69ff6c3a4c0249e3d"
            "6bcf157636666a0e17d8dba9034d9875e40bbff075b0a936acd75baf15179042"
            "959d6b27f8e233b60db93a2abce81f47e259f76b5a68d58c21fd8ccd7e102fc9"
            "292ec5a1bad8618a94f09ca6a58b1c5c7062fb17bd62035d898b76ead5f52a98"
            "69d5b6fbbbf5cd07bc3c35adbff4f03949fe32b455cd5b3de07859d65045b72f"
            "b1f4a0ab5c80a27a60b57ebd9e0b173778d3be592e74cdc6a9ffa147cbb021a8"
            "7b9a525bc9135114d4daacf0b111773551474ea98493ed8562dac1c9e6398ada"
            "60573ff550a01aa4468fd493fb69b3a98ab3790fc7f71ef5dfa3f1979ebe35af"
        ),
        "blind_sig": (
            "5ca77254ce107e6e6eedcf8ca03e08d4e92eeb0f4f08b2a2e7fb69da2f5db95f"
            "2167ce58a861e45a5cac1bf7d3df3edd64a2802bb5c16ceb62b2f5a0355c0d0f"
            "6d8270b658fa26e86afc18a88e91b0ec07e813d50ed4fb20376bf8470179a3a9"
            "7d5a29f9f9fe931d6bff233c45d62cd91cdb9a692cda309fad962fd9f7f19f89"
            "cc48bc75f9b521aeca21921330c7e91ff7ff2af6e62fe3112f7ec675e866c596"
            "1556a1796f2fd4707dd9fcde702caf003b5acfde1cd97bc5d2a63d126ac0587b"
            "f8ed6a3064d20dbdef9e207423e678f36e516e4c2696cc74f0a74be4c3ddaaf6"
            "cdbc95c9d58d930f0f4e00dfa2bf5d0a333964ec03226073030b9b78210d3160"
            "ec2722abf3c01efa1636a28c6c5ac9d14913537322ee42d26ab26518ec2af032"
            "02ea0e190a4790b7a8951be98313000c62d1fe0ea05647c451348f97ef5ced6c"
            "6e83303aececcc508fcc8f18f7751e050f9f7a562f45b0d03159486d067ab4b3"
            "df1b0f270d009436f0305640929a2b61cfeef24a2e39a9a622c9d9d9e2c99245"
            "ea415243f472b226e068ebba7624ccf012b86b21d80cb2e3b718224b2f7b638a"
            "16b7665a1a493b014dd3d0f7b97ca290665b1f0972bc4a7d4051e843182771b6"
            "258d9d63f919fde109f8487f443ea54518c053acfbf7c0cfe60435b6966d42c0"
            "34cf6ad3be2281fa2bf1a90f1d2cba55643e9ae37065a7534f53402e6f4c2a3a"
        ),
        "sig": (
            "4454b6983ff01cb28545329f394936efa42ed231e15efbc025fdaca00277acf0"
            "c8e00e3d8b0ecebd35b057b8ebfc14e1a7097368a4abd20b555894ccef3d1b95"
            "28c6bcbda6b95376bef230d0f1feff0c1064c62c60a7ae7431d1fdfa43a81eed"
            "9235e363e1ffa0b2797aba6aad6082fcd285e14fc8b71de6b9c87cb4059c7dc1"
            "e96ae1e63795a1e9af86b9073d1d848aef3eca8a03421bcd116572456b53bcfd"
            "4dabb0a9691f1fabda3ed0ce357aee2cfee5b1a0eb226f69716d4e011d96eede"
            "5e38a9acb531a64336a0d5b0bae3ab085b658692579a376740ff6ce69e89b06f"
            "360520b864e33d82d029c808248a19e18e31f0ecd16fac5cd4870f8d3ebc1c32"
            "c718124152dc905672ab0b7af48bf7d1ac1ff7b9c742549c91275ab105458ae3"
            "7621757add83482bbcf779e777bbd61126e93686635d4766aedf5103cf7978f3"
            "856ccac9e28d21a850dbb03c811128616d315d717be1c2b6254f8509acae8620"
            "42c034530329ce15ca2e2f6b1f5fd59272746e3918c748c0eb810bf76884fa10"
            "fcf749326bbfaa5ba285a0186a22e4f628dbf178d3bb5dc7e165ca73f6a55ecc"
            "14c4f5a26c4693ce5da032264cbec319b12ddb9787d0efa4fcf1e5ccee35ad85"
            "ecd453182df9ed735893f830b570faae8be0f6fe2e571a4e0d927cba4debd368"
            "d3b4fca33ec6251897a137cf75474a32ac8256df5e5ffa518b88b43fb6f63a24"
        ),
    },
]


def unhex(vector: dict[str, str], name: str) -> bytes:
    return bytes.fromhex(vector[name])


class FeedRng:
    """An rng that hands out the given byte strings in order, each of exactly the size asked."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def __call__(self, n: int) -> bytes:
        assert self.chunks, f"unexpected draw of {n} bytes"
        chunk = self.chunks.pop(0)
        assert len(chunk) == n, f"drew {n} bytes, the vector has {len(chunk)}"
        return chunk


VECTOR_SK = blindrsa.PrivateKey.from_primes(
    int(KEY["p"], 16), int(KEY["q"], 16), int(KEY["e"], 16), int(KEY["d"], 16)
)
VECTOR_PK = VECTOR_SK.public_key
BY_NAME = {v["name"]: v for v in VECTORS}


def suite_of(vector: dict[str, str]) -> blindrsa.Suite:
    return blindrsa.SUITES[vector["name"]]


def blinding_draws(vector: dict[str, str]) -> FeedRng:
    """What Blind draws for this vector: the salt (none when it is empty), then r."""
    r = pow(int(vector["inv"], 16), -1, VECTOR_PK.n)
    salt = unhex(vector, "salt")
    r_bytes = r.to_bytes(VECTOR_PK.modulus_len, "big")
    return FeedRng(salt, r_bytes) if salt else FeedRng(r_bytes)


by_variant = pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])


# ---------------------------------------------------------------------------------------------
# RFC 9474 Appendix A


def test_the_vectors_cover_every_variant() -> None:
    assert [v["name"] for v in VECTORS] == list(blindrsa.SUITES)
    assert set(blindrsa.SUITES) == {
        "RSABSSA-SHA384-PSS-Randomized",
        "RSABSSA-SHA384-PSSZERO-Randomized",
        "RSABSSA-SHA384-PSS-Deterministic",
        "RSABSSA-SHA384-PSSZERO-Deterministic",
    }
    assert blindrsa.DEFAULT_SUITE is blindrsa.RSABSSA_SHA384_PSS_RANDOMIZED
    assert blindrsa.DEFAULT_SUITE.salt_len == 48 and blindrsa.DEFAULT_SUITE.randomized


def test_vector_key() -> None:
    assert VECTOR_SK.n == int(KEY["n"], 16)
    assert VECTOR_PK.e == 65537 and VECTOR_PK.bits == 4096 and VECTOR_PK.modulus_len == 512
    assert VECTOR_SK.d == int(KEY["d"], 16)
    assert blindrsa.PrivateKey.from_bytes(VECTOR_SK.to_bytes()) == VECTOR_SK
    assert blindrsa.PublicKey.from_bytes(VECTOR_PK.to_bytes()) == VECTOR_PK


@by_variant
def test_vector_prepare(vector: dict[str, str]) -> None:
    suite = suite_of(vector)
    prefix = unhex(vector, "msg_prefix")
    rng = FeedRng(prefix) if suite.randomized else FeedRng()
    assert len(prefix) == (32 if suite.randomized else 0)
    assert suite.prepare(unhex(vector, "msg"), rng) == unhex(vector, "input_msg")
    assert not rng.chunks


@by_variant
def test_vector_encoding(vector: dict[str, str]) -> None:
    suite = suite_of(vector)
    salt = unhex(vector, "salt")
    assert len(salt) == suite.salt_len
    rng = FeedRng(salt) if salt else FeedRng()
    em_bits = VECTOR_PK.bits - 1
    encoded = blindrsa.emsa_pss_encode(unhex(vector, "input_msg"), em_bits, suite.salt_len, rng)
    assert encoded == unhex(vector, "encoded_msg")
    assert not rng.chunks
    # The signature opens to the same encoding (this also vouches for the A.1 encoded_msg).
    sig = blindrsa.os2ip(unhex(vector, "sig"))
    assert blindrsa.i2osp(blindrsa.rsavp1(VECTOR_PK, sig), 512) == encoded
    assert blindrsa.emsa_pss_verify(unhex(vector, "input_msg"), encoded, em_bits, suite.salt_len)


@by_variant
def test_vector_blind(vector: dict[str, str]) -> None:
    rng = blinding_draws(vector)
    blinded, inv = suite_of(vector).blind(VECTOR_PK, unhex(vector, "input_msg"), rng)
    assert blinded == unhex(vector, "blinded_msg")
    assert inv == int(vector["inv"], 16)
    assert not rng.chunks


@by_variant
def test_vector_blind_sign(vector: dict[str, str]) -> None:
    blinded = unhex(vector, "blinded_msg")
    assert suite_of(vector).blind_sign(VECTOR_SK, blinded) == unhex(vector, "blind_sig")
    assert blindrsa.blind_sign(VECTOR_SK, blinded) == unhex(vector, "blind_sig")


@by_variant
def test_vector_finalize_and_verify(vector: dict[str, str]) -> None:
    suite = suite_of(vector)
    prepared = unhex(vector, "input_msg")
    inv = int(vector["inv"], 16)
    sig = suite.finalize(VECTOR_PK, prepared, unhex(vector, "blind_sig"), inv)
    assert sig == unhex(vector, "sig")
    suite.verify(VECTOR_PK, prepared, sig)
    if suite.randomized:  # the verifier needs the prepared message, not the bare one
        with pytest.raises(BlindRSAError, match="invalid signature"):
            suite.verify(VECTOR_PK, unhex(vector, "msg"), sig)


def test_vector_through_the_token_api() -> None:
    vector = BY_NAME["RSABSSA-SHA384-PSS-Randomized"]
    msg = unhex(vector, "msg")
    prepared = blindrsa.prepare(msg, FeedRng(unhex(vector, "msg_prefix")))
    assert prepared == unhex(vector, "input_msg")
    blinded, state = blindrsa.blind(VECTOR_PK, prepared, blinding_draws(vector))
    assert blinded == unhex(vector, "blinded_msg")
    assert state.inv == int(vector["inv"], 16)
    blind_sig = blindrsa.blind_sign(VECTOR_SK, blinded)
    assert blind_sig == unhex(vector, "blind_sig")
    sig = blindrsa.finalize(VECTOR_PK, prepared, blind_sig, state)
    assert sig == unhex(vector, "sig")
    assert blindrsa.verify(VECTOR_PK, prepared, sig)
    assert not blindrsa.verify(VECTOR_PK, msg, sig)


def test_salt_lengths_do_not_cross() -> None:
    pss = BY_NAME["RSABSSA-SHA384-PSS-Deterministic"]
    zero = BY_NAME["RSABSSA-SHA384-PSSZERO-Deterministic"]
    assert pss["input_msg"] == zero["input_msg"]
    prepared = unhex(pss, "input_msg")
    blindrsa.RSABSSA_SHA384_PSS_DETERMINISTIC.verify(VECTOR_PK, prepared, unhex(pss, "sig"))
    with pytest.raises(BlindRSAError, match="invalid signature"):
        blindrsa.RSABSSA_SHA384_PSSZERO_DETERMINISTIC.verify(VECTOR_PK, prepared, unhex(pss, "sig"))
    with pytest.raises(BlindRSAError, match="invalid signature"):
        blindrsa.RSABSSA_SHA384_PSS_DETERMINISTIC.verify(VECTOR_PK, prepared, unhex(zero, "sig"))


def test_blinding_error_when_r_shares_a_factor_with_n() -> None:
    vector = BY_NAME["RSABSSA-SHA384-PSS-Randomized"]
    r = VECTOR_SK.p.to_bytes(512, "big")
    with pytest.raises(BlindRSAError, match="blinding error"):
        blindrsa.RSABSSA_SHA384_PSS_RANDOMIZED.blind(
            VECTOR_PK, unhex(vector, "input_msg"), FeedRng(unhex(vector, "salt"), r)
        )


def test_r_is_drawn_again_when_out_of_range() -> None:
    vector = BY_NAME["RSABSSA-SHA384-PSSZERO-Deterministic"]
    good = blinding_draws(vector).chunks[-1]
    rng = FeedRng(bytes(512), VECTOR_PK.n.to_bytes(512, "big"), b"\xff" * 512, good)
    blinded, inv = blindrsa.RSABSSA_SHA384_PSSZERO_DETERMINISTIC.blind(
        VECTOR_PK, unhex(vector, "input_msg"), rng
    )
    assert blinded == unhex(vector, "blinded_msg") and inv == int(vector["inv"], 16)
    assert not rng.chunks


# ---------------------------------------------------------------------------------------------
# Fresh keys


@pytest.fixture(scope="module")
def sk() -> blindrsa.PrivateKey:
    return blindrsa.generate(1024)


@pytest.fixture(scope="module")
def other_sk() -> blindrsa.PrivateKey:
    return blindrsa.generate(1024)


@pytest.fixture(scope="module")
def token(sk: blindrsa.PrivateKey) -> tuple[bytes, bytes]:
    """(prepared message, signature) through the token API with the fresh key."""
    pk = sk.public_key
    prepared = blindrsa.prepare(b"lanon rating credential, period 2024-05")
    blinded, state = blindrsa.blind(pk, prepared)
    sig = blindrsa.finalize(pk, prepared, blindrsa.blind_sign(sk, blinded), state)
    return prepared, sig


def test_generate(sk: blindrsa.PrivateKey, other_sk: blindrsa.PrivateKey) -> None:
    assert sk.n.bit_length() == 1024 and sk.e == 65537
    assert sk.n == sk.p * sk.q and sk.p != sk.q
    for prime in (sk.p, sk.q):
        assert prime.bit_length() == 512 and prime >> 510 == 0b11
        assert pow(2, prime - 1, prime) == 1 and pow(3, prime - 1, prime) == 1
    assert sk.e * sk.d % ((sk.p - 1) * (sk.q - 1) // math.gcd(sk.p - 1, sk.q - 1)) == 1
    assert blindrsa.PrivateKey.from_bytes(sk.to_bytes()) == sk
    assert blindrsa.PublicKey.from_bytes(sk.public_key.to_bytes()) == sk.public_key
    assert other_sk.n != sk.n
    shown = repr(sk)
    for secret in (sk.d, sk.p, sk.q, sk.dp, sk.dq, sk.qinv):
        assert str(secret) not in shown and f"{secret:x}" not in shown


@pytest.mark.parametrize("bits", [512, 1000, 1023, 1025, 16386])
def test_generate_refuses_bad_sizes(bits: int) -> None:
    with pytest.raises(BlindRSAError):
        blindrsa.generate(bits)


def test_token_round_trip(sk: blindrsa.PrivateKey, token: tuple[bytes, bytes]) -> None:
    pk = sk.public_key
    prepared, sig = token
    assert (
        prepared.endswith(b"lanon rating credential, period 2024-05") and len(prepared) == 32 + 39
    )
    assert len(sig) == pk.modulus_len == 128
    assert blindrsa.verify(pk, prepared, sig)
    # Fresh randomness each time: the signer sees unrelated blinded messages.
    assert blindrsa.prepare(b"m") != blindrsa.prepare(b"m")
    assert blindrsa.blind(pk, prepared)[0] != blindrsa.blind(pk, prepared)[0]


@pytest.mark.parametrize("suite", list(blindrsa.SUITES.values()), ids=list(blindrsa.SUITES))
def test_every_variant_round_trips(sk: blindrsa.PrivateKey, suite: blindrsa.Suite) -> None:
    pk = sk.public_key
    sigs = []
    for _ in range(2):
        prepared = suite.prepare(b"a payment token")
        blinded, inv = suite.blind(pk, prepared)
        sig = suite.finalize(pk, prepared, suite.blind_sign(sk, blinded), inv)
        suite.verify(pk, prepared, sig)
        sigs.append(sig)
    # Only PSSZERO-Deterministic (no randomizer, no salt) signs the same message identically.
    assert (sigs[0] == sigs[1]) == (suite is blindrsa.RSABSSA_SHA384_PSSZERO_DETERMINISTIC)


def test_verify_rejects_tampered_messages(
    sk: blindrsa.PrivateKey, token: tuple[bytes, bytes]
) -> None:
    pk = sk.public_key
    prepared, sig = token
    flipped = bytes([prepared[0] ^ 1]) + prepared[1:]
    for msg in (flipped, prepared[32:], prepared + b"\x00", prepared[:-1], b""):
        assert not blindrsa.verify(pk, msg, sig)


def test_verify_rejects_tampered_signatures(
    sk: blindrsa.PrivateKey, token: tuple[bytes, bytes]
) -> None:
    pk = sk.public_key
    prepared, sig = token
    for i in (0, 1, 64, 127):
        for bit in (0x01, 0x80):
            bad = bytearray(sig)
            bad[i] ^= bit
            assert not blindrsa.verify(pk, prepared, bytes(bad))


def test_verify_rejects_a_wrong_key(
    sk: blindrsa.PrivateKey, other_sk: blindrsa.PrivateKey, token: tuple[bytes, bytes]
) -> None:
    prepared, sig = token
    assert not blindrsa.verify(other_sk.public_key, prepared, sig)
    assert not blindrsa.verify(VECTOR_PK, prepared, sig)  # and of another size
    assert not blindrsa.verify(blindrsa.PublicKey(sk.n, 3), prepared, sig)


def test_verify_rejects_malformed_signatures(
    sk: blindrsa.PrivateKey, token: tuple[bytes, bytes]
) -> None:
    pk = sk.public_key
    prepared, sig = token
    k = pk.modulus_len
    for bad in (
        b"",
        sig[:-1],
        sig + b"\x00",
        b"\x00" + sig,
        bytes(k),  # 0
        (1).to_bytes(k, "big"),
        blindrsa.i2osp(pk.n, k),  # >= n
        blindrsa.i2osp(pk.n - 1, k),
        b"\xff" * k,
    ):
        assert not blindrsa.verify(pk, prepared, bad)
    with pytest.raises(BlindRSAError, match="invalid signature"):
        blindrsa.DEFAULT_SUITE.verify(pk, prepared, sig[:-1])


def test_finalize_rejects_what_is_not_the_blind_signature(
    sk: blindrsa.PrivateKey, other_sk: blindrsa.PrivateKey
) -> None:
    pk = sk.public_key
    prepared = blindrsa.prepare(b"token")
    blinded, state = blindrsa.blind(pk, prepared)
    blind_sig = blindrsa.blind_sign(sk, blinded)
    for bad in (blind_sig[:-1], blind_sig + b"\x00", b""):
        with pytest.raises(BlindRSAError, match="unexpected input size"):
            blindrsa.finalize(pk, prepared, bad, state)
    other_blinded, other_state = blindrsa.blind(pk, prepared)
    for bad_sig, msg, st in (
        (bytes(len(blind_sig)), prepared, state),
        (blindrsa.blind_sign(sk, other_blinded), prepared, state),  # answer to another request
        (blind_sig, prepared, other_state),  # another request's state
        (blind_sig, prepared[:-1] + b"X", state),  # another message
        (blind_sig[:-1] + bytes([blind_sig[-1] ^ 1]), prepared, state),
    ):
        with pytest.raises(BlindRSAError, match="invalid signature"):
            blindrsa.finalize(pk, msg, bad_sig, st)
    # A signer answering with the wrong key is caught too (a request both moduli can sign).
    while blindrsa.os2ip(other_blinded) >= other_sk.n:
        other_blinded, other_state = blindrsa.blind(pk, prepared)
    wrong = blindrsa.blind_sign(other_sk, other_blinded)
    with pytest.raises(BlindRSAError, match="invalid signature"):
        blindrsa.finalize(pk, prepared, wrong, other_state)
    assert blindrsa.verify(pk, prepared, blindrsa.finalize(pk, prepared, blind_sig, state))


def test_blind_sign_refuses_malformed_blinded_messages(sk: blindrsa.PrivateKey) -> None:
    k = sk.public_key.modulus_len
    for bad in (blindrsa.i2osp(sk.n, k), blindrsa.i2osp(sk.n + 1, k), b"\xff" * k):
        with pytest.raises(BlindRSAError, match="message representative out of range"):
            blindrsa.blind_sign(sk, bad)
    for bad in (b"", bytes(k - 1), bytes(k + 1), b"\x00" + blindrsa.i2osp(sk.n - 1, k)):
        with pytest.raises(BlindRSAError, match="unexpected input size"):
            blindrsa.blind_sign(sk, bad)
    assert (
        pow(blindrsa.os2ip(blindrsa.blind_sign(sk, blindrsa.i2osp(sk.n - 1, k))), sk.e, sk.n)
        == sk.n - 1
    )


def test_blind_sign_catches_a_faulty_private_operation(sk: blindrsa.PrivateKey) -> None:
    faulty = copy.copy(sk)
    object.__setattr__(faulty, "dp", sk.dp ^ 2)  # a fault in the CRT half mod p
    blinded, _ = blindrsa.blind(sk.public_key, blindrsa.prepare(b"x"))
    with pytest.raises(BlindRSAError, match="signing failure"):
        blindrsa.blind_sign(faulty, blinded)


# ---------------------------------------------------------------------------------------------
# Primitives and errors


def test_i2osp_os2ip() -> None:
    assert blindrsa.i2osp(0, 0) == b""
    assert blindrsa.i2osp(255, 1) == b"\xff"
    assert blindrsa.i2osp(256, 4) == b"\x00\x00\x01\x00"
    assert blindrsa.os2ip(b"\x00\x00\x01\x00") == 256
    for x, n in ((256, 1), (1, 0), (-1, 4)):
        with pytest.raises(BlindRSAError, match="integer too large"):
            blindrsa.i2osp(x, n)


def test_rsa_primitives_check_their_range() -> None:
    with pytest.raises(BlindRSAError, match="message representative out of range"):
        blindrsa.rsasp1(VECTOR_SK, VECTOR_SK.n)
    with pytest.raises(BlindRSAError, match="message representative out of range"):
        blindrsa.rsasp1(VECTOR_SK, -1)
    with pytest.raises(BlindRSAError, match="signature representative out of range"):
        blindrsa.rsavp1(VECTOR_PK, VECTOR_PK.n)
    m = 0x1234567890ABCDEF
    assert blindrsa.rsavp1(VECTOR_PK, blindrsa.rsasp1(VECTOR_SK, m)) == m
    assert blindrsa.rsasp1(VECTOR_SK, m) == pow(m, VECTOR_SK.d, VECTOR_SK.n)


def test_emsa_pss() -> None:
    msg = b"message"
    with pytest.raises(BlindRSAError, match="encoding error"):  # emLen 97 < 48 + 48 + 2
        blindrsa.emsa_pss_encode(msg, 8 * 97, 48)
    em = blindrsa.emsa_pss_encode(msg, 8 * 98, 48)
    assert len(em) == 98 and em[-1] == 0xBC
    assert blindrsa.emsa_pss_verify(msg, em, 8 * 98, 48)
    assert not blindrsa.emsa_pss_verify(msg + b"!", em, 8 * 98, 48)
    assert not blindrsa.emsa_pss_verify(msg, em, 8 * 98, 0)
    assert not blindrsa.emsa_pss_verify(msg, em[:-1] + b"\xbd", 8 * 98, 48)
    assert not blindrsa.emsa_pss_verify(msg, em[1:], 8 * 98, 48)
    # emBits one short of a whole byte: the top bit is cleared, and must be clear.
    em = blindrsa.emsa_pss_encode(msg, 8 * 98 - 1, 0)
    assert em[0] < 0x80 and blindrsa.emsa_pss_verify(msg, em, 8 * 98 - 1, 0)
    assert not blindrsa.emsa_pss_verify(msg, bytes([em[0] | 0x80]) + em[1:], 8 * 98 - 1, 0)
    seed = b"seed"
    assert blindrsa.mgf1_sha384(seed, 100)[:50] == blindrsa.mgf1_sha384(seed, 50)
    assert blindrsa.mgf1_sha384(seed, 48) == hashlib.sha384(seed + bytes(4)).digest()


def test_an_rng_that_returns_the_wrong_size_is_refused() -> None:
    with pytest.raises(BlindRSAError, match="rng returned"):
        blindrsa.prepare(b"m", lambda n: bytes(n - 1))


# ---------------------------------------------------------------------------------------------
# Key encodings


def test_public_key_encoding(sk: blindrsa.PrivateKey) -> None:
    pk = sk.public_key
    raw = pk.to_bytes()
    assert raw == b"\x00\x00\x00\x80" + pk.n.to_bytes(128, "big") + b"\x00\x00\x00\x03\x01\x00\x01"
    assert blindrsa.key_id(pk) == hashlib.sha256(raw).digest()[:8]
    assert len(blindrsa.key_id(pk)) == blindrsa.KEY_ID_LEN == 8
    assert blindrsa.key_id(VECTOR_PK) != blindrsa.key_id(pk)
    n_field = raw[: 4 + 128]
    e_field = raw[4 + 128 :]
    zero_n = b"\x00\x00\x00\x81\x00" + pk.n.to_bytes(128, "big")
    for bad in (
        b"",
        raw[:-1],
        raw + b"\x00",
        n_field,
        zero_n + e_field,  # not minimal
        n_field + b"\x00\x00\x00\x00",  # empty e
        n_field + b"\x00\x00\x00\x01\x01",  # e = 1
        n_field + b"\x00\x00\x00\x03\x01\x00\x02",  # e even
        n_field + b"\x00\x00\x00\x05\x01\x00\x00\x00\x01",  # e > 2^32
        b"\x00\x00\x00\x80" + (pk.n + 1).to_bytes(128, "big") + e_field,  # n even
        b"\x00\x00\x00\x40" + (2**511 + 1).to_bytes(64, "big") + e_field,  # n too small
        b"\xff\xff\xff\xff" + raw,
    ):
        with pytest.raises(BlindRSAError):
            blindrsa.PublicKey.from_bytes(bad)


def test_private_key_encoding(sk: blindrsa.PrivateKey, other_sk: blindrsa.PrivateKey) -> None:
    raw = sk.to_bytes()
    assert raw.startswith(sk.public_key.to_bytes())
    assert blindrsa.PrivateKey.from_bytes(raw) == sk
    with pytest.raises(BlindRSAError):
        blindrsa.PrivateKey.from_bytes(sk.public_key.to_bytes())
    with pytest.raises(BlindRSAError):
        blindrsa.PrivateKey.from_bytes(raw + b"\x00")
    with pytest.raises(BlindRSAError):  # d that does not belong to e
        blindrsa.PrivateKey.from_primes(sk.p, sk.q, sk.e, sk.d + 2)
    with pytest.raises(BlindRSAError):  # n that is not p * q
        blindrsa.PrivateKey.from_bytes(
            other_sk.public_key.to_bytes() + raw[len(sk.public_key.to_bytes()) :]
        )
    with pytest.raises(BlindRSAError):  # inconsistent CRT values
        blindrsa.PrivateKey(sk.n, sk.e, sk.d, sk.p, sk.q, sk.dp, sk.dq, sk.qinv + 1)

import CLMDB
import GallocyCodec
import GallocyRaft

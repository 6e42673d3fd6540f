import CSQLite
import GallocyCodec

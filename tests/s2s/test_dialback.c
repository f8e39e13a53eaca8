/* XEP-0185 dialback keys: the spec's test vector, and key comparison. */
#include "../check.h"
#include "dialback.h"

int main(void)
{
    char key[XF_DIALBACK_KEY_LEN + 1];
    CHECK(xf_dialback_key("s3cr3tf0rd14lb4ck", 17, "montague.example", "capulet.example",
                          "D60000229F", key));
    CHECK_STR(key, "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3");
    /* Any change of input changes the key. */
    char other[XF_DIALBACK_KEY_LEN + 1];
    CHECK(xf_dialback_key("s3cr3tf0rd14lb4ck", 17, "capulet.example", "montague.example",
                          "D60000229F", other));
    CHECK(strcmp(key, other) != 0);
    CHECK(xf_dialback_key("s3cr3tf0rd14lb4cK", 17, "montague.example", "capulet.example",
                          "D60000229F", other));
    CHECK(strcmp(key, other) != 0);
    CHECK(xf_dialback_key_equal(key, 64, key, 64));
    CHECK(!xf_dialback_key_equal(key, 64, other, 64));
    CHECK(!xf_dialback_key_equal(key, 64, key, 63));
    return check_report("test_dialback");
}

// The CLI's own config file is read within the same limits as documents,
// strictly, and what evac writes reads back.
#include "cli/cli_config.h"

#include <gtest/gtest.h>

#include "hostile_documents.h"

namespace evac::cli {
namespace {

TEST_F(CliDocumentsFileTest, TheCliConfigIsReadWithinTheSameLimitsAndStrictly) {
  auto bomb = load_cli_config(write("bomb.yaml", alias_bomb()).string());
  ASSERT_FALSE(bomb.is_ok());
  EXPECT_NE(bomb.status().message().find("CLI config: "), std::string::npos) << bomb.status().message();
  EXPECT_NE(bomb.status().message().find("more than 100000 values"), std::string::npos) << bomb.status().message();

  auto deep = load_cli_config(write("deep.yaml", "contexts: " + nested(5000) + "\n").string());
  ASSERT_FALSE(deep.is_ok());
  EXPECT_NE(deep.status().message().find("nested more than 64 deep"), std::string::npos) << deep.status().message();

  auto misspelt = load_cli_config(write("typo.yaml", "contexts:\n  a: {url: https://x, token: t, pinn: p}\n").string());
  ASSERT_FALSE(misspelt.is_ok());
  EXPECT_NE(misspelt.status().message().find("contexts.a has an unknown key 'pinn'"), std::string::npos)
      << misspelt.status().message();

  // What evac writes reads back, a token of digits included.
  CliConfig cfg;
  cfg.current = "007";
  cfg.contexts["007"] = Context{"https://127.0.0.1:8441", "12345", "sha256//abc"};
  const std::string path = (dir_ / "config.yaml").string();
  ASSERT_TRUE(save_cli_config(path, cfg).is_ok());
  auto back = load_cli_config(path);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->current, "007");
  EXPECT_EQ(back->contexts["007"].token, "12345");
  EXPECT_EQ(back->contexts["007"].pin, "sha256//abc");
}

}  // namespace
}  // namespace evac::cli

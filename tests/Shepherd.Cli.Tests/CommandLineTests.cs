using System.CommandLine;
using Shepherd.Cli.Commands;

namespace Shepherd.Cli.Tests;

/// <summary>Every option of every command, given a value of the wrong kind, and what the help says of them.</summary>
public sealed class CommandLineTests
{
    /// <summary>Values no option that takes a number, a choice, a duration, a url or an amount accepts.</summary>
    private static readonly string[] WrongValues = ["abc", "1.5.2", "-1e999", "0x10", "∞"];

    public static TheoryData<string, string> ValuedOptions()
    {
        var data = new TheoryData<string, string>();
        foreach (var command in ShepherdCommands.Root().Subcommands)
        {
            foreach (var option in command.Options.Where(o => !IsFreeText(o)))
            {
                data.Add(command.Name, option.Name);
            }
        }

        return data;
    }

    /// <summary>Options that take any text (a path, a key, a name) or none (a switch): no value is of the wrong kind for them.</summary>
    private static bool IsFreeText(Option option) =>
        option.ValueType == typeof(bool) || option.ValueType == typeof(string) || option.ValueType == typeof(string[])
        || option.Name is "--help" or "--version" or "--metadata";

    [Theory]
    [MemberData(nameof(ValuedOptions))]
    public void ANumericOrChoiceOption_GivenAValueOfTheWrongKind_IsRefusedInOneLineNamingIt(string commandName, string optionName)
    {
        var root = ShepherdCommands.Root();
        var command = root.Subcommands.Single(c => c.Name == commandName);
        // An argument for each the command takes, and --wait where the waiting options need it.
        string[] arguments = [.. command.Arguments.Select(_ => "x"), .. command.Options.Where(o => o.Name == "--wait").Select(o => o.Name)];
        foreach (var value in WrongValues)
        {
            var parse = root.Parse([commandName, .. arguments, optionName, value]);
            var errors = parse.Errors.Select(e => e.Message).Where(m => m.Contains(optionName, StringComparison.Ordinal)).ToList();

            var error = Assert.Single(errors);
            Assert.DoesNotContain('\n', error);
            Assert.Contains(value, error, StringComparison.Ordinal);
            // What is accepted, in the user's words, not a type of the code.
            Assert.DoesNotContain("System.", error, StringComparison.Ordinal);
            Assert.DoesNotContain("Shepherd.", error, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("run", "--state", "a path")]
    [InlineData("run", "--output", "a path")]
    [InlineData("run", "--errors", "a path")]
    [InlineData("run", "--cache", "a path")]
    [InlineData("run", "--config", "a path")]
    [InlineData("estimate", "--cache", "a path")]
    [InlineData("estimate", "--config", "a path")]
    [InlineData("cache stats", "--cache", "a path")]
    [InlineData("cache prune", "--config", "a path")]
    [InlineData("results", "--output", "a path")]
    [InlineData("serve", "--store", "a SQLite file or a PostgreSQL connection string")]
    [InlineData("serve", "--node", "a name")]
    public void AnEmptyPathOrName_IsRefusedInOneLineNamingTheFlag(string commandName, string optionName, string what)
    {
        var root = ShepherdCommands.Root();
        var words = commandName.Split(' ');
        var command = words.Skip(1).Aggregate(root.Subcommands.Single(c => c.Name == words[0]), (parent, name) => parent.Subcommands.Single(c => c.Name == name));

        var parse = root.Parse([.. words, .. command.Arguments.Select(_ => "x"), optionName, " "]);

        Assert.Contains($"{optionName} needs {what}; got an empty one.", parse.Errors.Select(e => e.Message));
    }

    [Fact]
    public async Task AWrongValue_ExitsWith2_AndNoStackTrace()
    {
        using var folder = new Testing.TempDirectory();
        var result = await ShepherdProcess.RunAsync(folder.Path, "serve", "--otlp-endpoint", "abc");

        Assert.Equal(ExitCodes.InvalidInput, result.ExitCode);
        Assert.StartsWith("--otlp-endpoint must be an absolute http or https url", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NoCommand_ListsTheCommands_AndExitsWith2()
    {
        using var folder = new Testing.TempDirectory();
        var result = await ShepherdProcess.RunAsync(folder.Path);

        Assert.Equal(ExitCodes.InvalidInput, result.ExitCode);
        Assert.Empty(result.Stdout);
        Assert.All(ShepherdCommands.Root().Subcommands, command => Assert.Contains(command.Name, result.Stderr, StringComparison.Ordinal));
        Assert.Contains("--help", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void TheHelp_ShowsTheDefaultsOfChoices_AsTheWordsAUserTypes()
    {
        var root = ShepherdCommands.Root();
        var output = new StringWriter();

        root.Parse(["run", "--help"]).Invoke(new InvocationConfiguration { Output = output });
        var help = output.ToString();

        Assert.Contains("--priority <low|normal|high>", help, StringComparison.Ordinal);
        Assert.Contains("[default: normal]", help, StringComparison.Ordinal);
        Assert.Contains("[default: auto]", help, StringComparison.Ordinal);
        Assert.Contains("[default: chars]", help, StringComparison.Ordinal);
        Assert.DoesNotContain("[default: Normal]", help, StringComparison.Ordinal);
        Assert.DoesNotContain("[default: Auto]", help, StringComparison.Ordinal);
        Assert.DoesNotContain("[default: Characters]", help, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("run")]
    [InlineData("submit")]
    public void TheDeadlineAndTheMode_AreRead_AndCompletionWindowIsTheDeadlinesOtherName(string commandName)
    {
        var root = ShepherdCommands.Root();
        using var folder = new Testing.TempDirectory();
        var input = Testing.BatchFiles.Write(folder.File("in.jsonl"), Testing.BatchFiles.OpenAIChat(1));

        var given = root.Parse([commandName, input, "--completion-window", "90m", "--mode", "native"]);
        var left = root.Parse([commandName, input, "--deadline", "6h"]);
        var typedAsAlias = root.Parse([commandName, input, "--completion-window", "soon"]);

        Assert.Empty(given.Errors);
        Assert.Equal(TimeSpan.FromMinutes(90), given.GetValue<TimeSpan?>("--deadline"));
        Assert.Equal(Engine.Model.BatchMode.Native, given.GetValue<Engine.Model.BatchMode?>("--mode"));
        Assert.Equal((TimeSpan.FromHours(6), (Engine.Model.BatchMode?)null), (left.GetValue<TimeSpan?>("--deadline"), left.GetValue<Engine.Model.BatchMode?>("--mode")));
        // A refusal names the flag as it was typed.
        Assert.StartsWith("--completion-window is a duration with its unit", Assert.Single(typedAsAlias.Errors).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheHelp_NamesTheDeadlineAndTheFourModes()
    {
        var output = new StringWriter();

        ShepherdCommands.Root().Parse(["run", "--help"]).Invoke(new InvocationConfiguration { Output = output });

        Assert.Contains("--completion-window, --deadline <DURATION>", output.ToString(), StringComparison.Ordinal);
        Assert.Contains("--mode <realtime|native|flex|auto>", output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void TheCommandThatResumesAFreshRun_LeavesOutFresh_AndTheKey()
    {
        var command = Running.FileBatchRun.ResumeCommand(["run", "my batch.jsonl", "--fresh", "--api-key", "sk-secret", "--base-url", "http://127.0.0.1:9/v1", "--api-key=sk-other"]);

        Assert.Equal("shepherd run 'my batch.jsonl' --api-key \"$KEY\" --base-url http://127.0.0.1:9/v1 --api-key=\"$KEY\"", command);
    }

    [Theory]
    [InlineData(0, "0")]
    [InlineData(9_999, "9,999")]
    [InlineData(18_456, "18.5k")]
    [InlineData(184_560, "185k")]
    [InlineData(999_950, "1.00M")]
    [InlineData(1_847_000, "1.85M")]
    [InlineData(18_470_000, "18.5M")]
    [InlineData(2_100_000_000, "2.10B")]
    public void ACount_ShowsThreeSignificantDigits_WithItsUnit(long count, string shown) =>
        Assert.Equal(shown, Running.ProgressDisplay.FormatCount(count));

    [Theory]
    [InlineData("600", 600)]
    [InlineData("10m", 600)]
    [InlineData("1.5s", 1.5)]
    public void SecondsOptions_TakeANumberOrADurationWithItsUnit_AsTheDurationOptionsDo(string text, double seconds)
    {
        var root = ShepherdCommands.Root();

        var parse = root.Parse(["run", "x", "--timeout", text]);

        Assert.DoesNotContain(parse.Errors, e => e.Message.Contains("--timeout", StringComparison.Ordinal));
        Assert.Equal(seconds, parse.GetValue<double>("--timeout"));
    }
}
